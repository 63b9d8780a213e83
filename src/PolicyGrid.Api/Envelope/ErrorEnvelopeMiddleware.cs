using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// Turns every exception into the contract's envelope. Domain errors carry their own status and
/// code; framework complaints about the request are the caller's mistake (400/413), never a 500.
/// A failure of an adapter's own infrastructure answers what the adapter's <see cref="IFailureTranslator"/> says (the
/// embedded store's SQLite on a full disk), and a write the server's disk refused what <see cref="DiskFailures"/> says,
/// both logged whole. A call still running when the server's stop is about to close its connection is stopped and
/// answered 503 (<see cref="StopGrace"/>). Only a genuine fault of ours answers 500, with a trace id to
/// find it in the logs.
/// </summary>
public sealed class ErrorEnvelopeMiddleware(RequestDelegate next, ILogger<ErrorEnvelopeMiddleware> logger, IEnumerable<IFailureTranslator> translators,
    StopGrace grace)
{
    private readonly IFailureTranslator[] translators = [.. translators];

    public async Task InvokeAsync(HttpContext context)
    {
        var callerGone = context.RequestAborted;
        // A call still running when the server's stop is about to close its connection is stopped and answered (below).
        using var stopped = grace.Bind(context);
        try
        {
            await next(context);
        }
        catch (OperationCanceledException) when (callerGone.IsCancellationRequested)
        {
            // The caller went away; nobody is left to answer.
        }
        catch (OperationCanceledException) when (grace.RanOut && !context.Response.HasStarted)
        {
            // Written under the caller's own token: the one the call ran under has fired.
            context.RequestAborted = callerGone;
            ClearKeepingExecutionId(context.Response);
            await Failure.Of(503, ErrorCodes.BackendUnavailable, grace.Message(context)).ExecuteAsync(context);
        }
        catch (OperationCanceledException) when (grace.RanOut)
        {
            // Its answer had begun: it cannot become a 503 now, and the host is closing the connection.
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            context.RequestAborted = callerGone;
            var failure = Translate(e, context);
            ClearKeepingExecutionId(context.Response);
            await failure.ExecuteAsync(context);
        }
    }

    // A run's id, given before it failed (or was stopped by the server's stop), still names its records in the decision
    // log: it stays on the error answer.
    private static void ClearKeepingExecutionId(HttpResponse response)
    {
        var executionId = response.Headers[ExecutionIdHeader];
        response.Clear();
        if (executionId.Count > 0) response.Headers[ExecutionIdHeader] = executionId;
    }

    /// <summary>The header a run's answer names its execution id in (a graph run's; its records in the decision log carry it).</summary>
    public const string ExecutionIdHeader = "X-PolicyGrid-Execution-Id";

    private Failure Translate(Exception e, HttpContext context)
    {
        switch (e)
        {
            case PolicyGridException p:
                if (p.Status >= 500 && !LoggedFailures.IsMarked(p)) logger.LogWarning("{Method} {Path} answered {Status} {Code}: {Message}", context.Request.Method, context.Request.Path, p.Status, p.Code, p.Message);
                return Failure.From(p);
            case BadHttpRequestException b when b.StatusCode == StatusCodes.Status413PayloadTooLarge:
                return Failure.Of(413, ErrorCodes.TooLarge, "request body is larger than the server's limit");
            case BadHttpRequestException b when b.StatusCode == StatusCodes.Status408RequestTimeout:
                // Kestrel's "data arriving too slowly. See MinRequestBodyDataRate": most often a body shorter than its
                // Content-Length, which the server cannot tell from a slow one but by waiting.
                return Failure.Of(400, ErrorCodes.BadRequest, context.Request.ContentLength is { } declared
                    ? $"request body stopped arriving before the {declared} bytes its Content-Length declared (the server stops waiting when a body comes slower than {MinBodyRate(context)}): send the whole body, with a Content-Length that matches it"
                    : $"request body stopped arriving (the server stops waiting when a body comes slower than {MinBodyRate(context)}): send the whole body");
            case BadHttpRequestException b:
                return Failure.Of(400, ErrorCodes.BadRequest, DescribeBadRequest(b));
            // A bare JsonException is not the caller's: request bodies are parsed by JsonBody.Parse (and the event
            // readers), which answer a 400 naming the problem themselves, and the framework's binder wraps its own in
            // a BadHttpRequestException. One reaching here came from a stored document, a remote answer or writing a
            // response, so it is our fault, answered as one (500 with a trace id), never "request body is not valid JSON".
            default:
                if (Infrastructure(e) is { } translated)
                {
                    logger.LogError(e, "{Method} {Path} answered {Status} {Code}: {Message}", context.Request.Method, context.Request.Path,
                        translated.Status, translated.Code, translated.Message);
                    return Failure.From(translated);
                }
                logger.LogError(e, "{Method} {Path} failed (trace {TraceId})", context.Request.Method, context.Request.Path, context.TraceIdentifier);
                return Failure.Of(500, "internal_error", $"the server failed while handling this request (trace id {context.TraceIdentifier})");
        }
    }

    // What an adapter says its own failure means, or a write the server's disk refused (any shape: bundles, temp files).
    private PolicyGridException? Infrastructure(Exception e)
    {
        foreach (var translator in translators)
            if (translator.Translate(e) is { } translated) return translated;
        return DiskFailures.In(e);
    }

    private static string MinBodyRate(HttpContext context) =>
        context.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.IHttpMinRequestBodyDataRateFeature>()?.MinDataRate is { } rate
            ? $"{rate.BytesPerSecond:0.#} bytes/s after {rate.GracePeriod.TotalSeconds:0.#} s"
            : "the minimum data rate";

    private static string DescribeBadRequest(BadHttpRequestException b) =>
        b.InnerException is JsonException j ? $"request body is not valid JSON: {j.Message}" : b.Message;
}
