using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// Turns every exception into the contract's envelope. Domain errors carry their own status and
/// code; framework complaints about the request are the caller's mistake (400/413), never a 500.
/// Only a genuine fault of ours answers 500, with a trace id to find it in the logs.
/// </summary>
public sealed class ErrorEnvelopeMiddleware(RequestDelegate next, ILogger<ErrorEnvelopeMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await next(context);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The caller went away; nobody is left to answer.
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            var failure = Translate(e, context);
            context.Response.Clear();
            await failure.ExecuteAsync(context);
        }
    }

    private Failure Translate(Exception e, HttpContext context)
    {
        switch (e)
        {
            case PolicyGridException p:
                if (p.Status >= 500) logger.LogWarning("{Method} {Path} answered {Status} {Code}: {Message}", context.Request.Method, context.Request.Path, p.Status, p.Code, p.Message);
                return Failure.From(p);
            case BadHttpRequestException b when b.StatusCode == StatusCodes.Status413PayloadTooLarge:
                return Failure.Of(413, ErrorCodes.TooLarge, "request body is larger than the server's limit");
            case BadHttpRequestException b:
                return Failure.Of(400, ErrorCodes.BadRequest, DescribeBadRequest(b));
            case JsonException j:
                return Failure.Of(400, ErrorCodes.BadRequest, $"request body is not valid JSON: {j.Message}");
            default:
                logger.LogError(e, "{Method} {Path} failed (trace {TraceId})", context.Request.Method, context.Request.Path, context.TraceIdentifier);
                return Failure.Of(500, "internal_error", $"the server failed while handling this request (trace id {context.TraceIdentifier})");
        }
    }

    private static string DescribeBadRequest(BadHttpRequestException b) =>
        b.InnerException is JsonException j ? $"request body is not valid JSON: {j.Message}" : b.Message;
}
