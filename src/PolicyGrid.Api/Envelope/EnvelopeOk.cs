using System.Reflection;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using HttpJsonOptions = Microsoft.AspNetCore.Http.Json.JsonOptions;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// A 200 with the success envelope, written whole with its Content-Length. <see cref="Microsoft.AspNetCore.Http.HttpResults.Ok{TValue}"/>
/// streams JSON, so every answer went chunked: clients and proxies that want the length up front (HTTP/1.0 ones,
/// buffering load balancers, progress bars) had none, and each answer paid chunk framing and sometimes a second send
/// for the terminating chunk.
/// </summary>
public sealed class EnvelopeOk<T>(Envelope<T> value) : IResult, IEndpointMetadataProvider, IStatusCodeHttpResult, IValueHttpResult, IValueHttpResult<Envelope<T>>
{
    public Envelope<T> Value { get; } = value;
    object? IValueHttpResult.Value => Value;
    public int StatusCode => StatusCodes.Status200OK;
    int? IStatusCodeHttpResult.StatusCode => StatusCode;

    public Task ExecuteAsync(HttpContext httpContext) => JsonAnswer.WriteAsync(httpContext, StatusCode, Value);

#pragma warning disable CA1000 // IEndpointMetadataProvider's member is static by definition
    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Metadata.Add(new ProducesResponseTypeMetadata(StatusCodes.Status200OK, typeof(Envelope<T>), ["application/json"]));
    }
#pragma warning restore CA1000
}

/// <summary>JSON bodies of the API's answers, success and failure alike: serialized first, then sent with their length.</summary>
public static class JsonAnswer
{
    public const string ContentType = "application/json; charset=utf-8";

    public static Task WriteAsync<T>(HttpContext httpContext, int status, T value)
    {
        ArgumentNullException.ThrowIfNull(httpContext);
        var options = httpContext.RequestServices.GetService<IOptions<HttpJsonOptions>>()?.Value.SerializerOptions ?? ApiJson.Options;
        var body = JsonSerializer.SerializeToUtf8Bytes(value, options);
        var response = httpContext.Response;
        response.StatusCode = status;
        response.ContentType = ContentType;
        response.ContentLength = body.Length;
        return response.Body.WriteAsync(body, httpContext.RequestAborted).AsTask();
    }
}
