using System.Reflection;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Errors;
using HttpJsonOptions = Microsoft.AspNetCore.Http.Json.JsonOptions;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// A failure answered in the contract's envelope (not ProblemDetails). Handlers may return it in a
/// <c>Results&lt;Ok&lt;Envelope&lt;T&gt;&gt;, Failure&gt;</c>; the error middleware writes thrown
/// <see cref="PolicyGridException"/>s through it too, so both paths answer identically.
/// </summary>
public sealed class Failure : IResult, IStatusCodeHttpResult, IValueHttpResult, IValueHttpResult<ErrorEnvelope>, IEndpointMetadataProvider
{
    private Failure(int status, ErrorEnvelope body, int? retryAfterSeconds)
    {
        StatusCode = status;
        Value = body;
        RetryAfterSeconds = retryAfterSeconds;
    }

    public int StatusCode { get; }
    int? IStatusCodeHttpResult.StatusCode => StatusCode;
    public ErrorEnvelope Value { get; }
    object? IValueHttpResult.Value => Value;
    public int? RetryAfterSeconds { get; }

    public static Failure From(PolicyGridException e) => new(e.Status, ErrorEnvelope.From(e), e.RetryAfterSeconds);

    public static Failure Of(int status, string code, string message) => new(status, new ErrorEnvelope(message, code), null);

    public async Task ExecuteAsync(HttpContext httpContext)
    {
        var response = httpContext.Response;
        response.StatusCode = StatusCode;
        // Every 401 carries the challenge RFC 9110 requires; the token check sets a more precise one first.
        if (StatusCode == StatusCodes.Status401Unauthorized && !response.Headers.ContainsKey(Microsoft.Net.Http.Headers.HeaderNames.WWWAuthenticate))
            response.Headers.WWWAuthenticate = "Bearer";
        if (RetryAfterSeconds is { } seconds) response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await JsonAnswer.WriteAsync(httpContext, StatusCode, Value);
    }

    // Documents the error body once for every endpoint that may fail, so the OpenAPI document shows the envelope.
    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder)
    {
        foreach (var status in new[] { 400, 401, 403, 404, 409, 413 })
            builder.Metadata.Add(new ProducesResponseTypeMetadata(status, typeof(ErrorEnvelope), ["application/json"]));
    }
}

/// <summary>Serializer options of the contract (snake_case), for writers that run outside DI.</summary>
public static class ApiJson
{
    public static readonly JsonSerializerOptions Options = new(PolicyGrid.Core.Documents.Json.Options);
}
