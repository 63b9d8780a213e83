using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Health;

/// <summary>Liveness and readiness probes: outside the envelope and open without a token, as probes expect.</summary>
public static class HealthApi
{
    public sealed record HealthStatus(string Status, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? Reason = null);

    public static IEndpointRouteBuilder MapHealthApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", Live)
            .WithName("Healthz").WithSummary("Liveness: the process answers HTTP").WithTags("Health").AllowAnonymous();
        app.MapGet("/readyz", Ready)
            .WithName("Readyz").WithSummary("Readiness: the document store answers a query and the decision log records").WithTags("Health").AllowAnonymous();
        return app;
    }

    public static Ok<HealthStatus> Live() => TypedResults.Ok(new HealthStatus("ok"));

    public static async Task<Results<Ok<HealthStatus>, JsonHttpResult<HealthStatus>>> Ready(HttpContext context, ILoggerFactory logs, CancellationToken ct)
    {
        // Resolved here rather than injected: a shape without a store must answer 503, not fail to start.
        var store = context.RequestServices.GetService(typeof(IDocumentStore)) as IDocumentStore;
        if (store is null)
            return TypedResults.Json(new HealthStatus("unavailable", "no document store is configured"), statusCode: StatusCodes.Status503ServiceUnavailable);
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
            deadline.CancelAfter(TimeSpan.FromSeconds(5));
            await store.QueryAsync(Collections.Executors, DocumentQuery.All(1), deadline.Token);
            // The audit trail is part of the service: while decisions are lost, say so (the log has why).
            if (context.RequestServices.GetService(typeof(DecisionLog)) is DecisionLog { Failure: { } failing })
                return TypedResults.Json(new HealthStatus("unavailable",
                    $"decision log: {failing.Lost} decision(s) could not be recorded since {DecisionLog.FormatTime(failing.Since)} (the server's log says why)"),
                    statusCode: StatusCodes.Status503ServiceUnavailable);
            return TypedResults.Ok(new HealthStatus("ready"));
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            logs.CreateLogger(typeof(HealthApi)).LogWarning(e, "readiness check failed: the document store did not answer");
            return TypedResults.Json(new HealthStatus("unavailable", $"document store: {e.Message}"), statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }
}
