using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Api.Events;
using PolicyGrid.Core.Errors;
using PolicyGrid.Dapr;

namespace PolicyGrid.Executor;

/// <summary>
/// The executor app's pub/sub side, in Dapr's own shapes: <c>GET /dapr/subscribe</c> declares the
/// subscription programmatically; the sidecar then POSTs each event on <c>policy-evaluations</c> to
/// <see cref="DaprNames.EvaluationsRoute"/> as a structured CloudEvent and reads our
/// <c>{"status": "SUCCESS" | "RETRY" | "DROP"}</c> answer (always HTTP 200, so the status is what counts).
/// </summary>
public static class EvaluationSubscription
{
    public const string Success = "SUCCESS";
    public const string Retry = "RETRY";
    public const string Drop = "DROP";

    /// <summary>The subscription list the sidecar reads at start.</summary>
    public static JsonArray Subscriptions() =>
    [
        new JsonObject
        {
            ["pubsubname"] = DaprNames.Components.PubSub,
            ["topic"] = DaprNames.Topics.Evaluations,
            ["route"] = DaprNames.EvaluationsRoute,
            // Events still failing after the resiliency policy's retries end up here instead of being lost.
            ["deadLetterTopic"] = DaprNames.Topics.DeadLetter,
        },
        // Deleted and retired policies: this app gives back their workers and parsed documents.
        DaprNames.PolicyEventsSubscription(),
    ];

    public static IEndpointRouteBuilder MapEvaluationSubscription(this IEndpointRouteBuilder app)
    {
        // The sidecar sends no API token (a bearer token is for users); with APP_API_TOKEN it sends that instead,
        // which UseDaprAppToken checks for every route of this app. Without one, only the pod's own loopback may call
        // these routes (DaprAppToken.SidecarOnly): a node that create-infra exposed with API tokens would otherwise run an
        // evaluation event posted by anything that reaches its Service.
        var sidecarOnly = DaprAppToken.SidecarOnly(app.ServiceProvider);
        app.MapGet("/dapr/subscribe", () => Results.Json(Subscriptions()))
            .WithName("DaprSubscribe").WithTags("Dapr").ExcludeFromDescription()
            .AllowAnonymous().AddEndpointFilter(sidecarOnly);
        app.MapPost(DaprNames.EvaluationsRoute, Deliver)
            .WithName("DeliverEvaluationEvent").WithTags("Dapr").ExcludeFromDescription()
            .AllowAnonymous().AddEndpointFilter(sidecarOnly);
        app.MapPost(DaprNames.PolicyEventsRoute, DeliverPolicyEvent)
            .WithName("DeliverPolicyEvent").WithTags("Dapr").ExcludeFromDescription()
            .AllowAnonymous().AddEndpointFilter(sidecarOnly);
        return app;
    }

    public static async Task<IResult> Deliver(HttpContext context, EvaluationEventHandler handler, ILoggerFactory logs, CancellationToken ct)
    {
        var log = logs.CreateLogger(typeof(EvaluationSubscription));
        byte[] body;
        try
        {
            body = await RequestBytes.ReadAsync(context, 4 * 1024 * 1024, "event");
        }
        catch (PolicyGridException e)
        {
            // Too large to ever be read: retrying cannot help.
            await handler.RejectAsync(e, "", null, ct);
            return Status(Drop);
        }
        try
        {
            CloudNative.CloudEvents.CloudEvent cloudEvent;
            try
            {
                cloudEvent = CloudEventReader.Read(body, context.Request.ContentType, context.Request.Headers);
            }
            catch (PolicyGridException e)
            {
                await handler.RejectAsync(e, Encoding.UTF8.GetString(body), null, ct);
                return Status(Drop);
            }
            var outcome = await handler.HandleAsync(cloudEvent, ct);
            return Status(outcome.Disposition switch
            {
                EventDisposition.Success => Success,
                EventDisposition.Drop => Drop,
                _ => Retry,
            });
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            // Publishing the decision failed (pub/sub down) or something unexpected: let the sidecar deliver again.
            log.LogWarning(e, "Evaluation event could not be handled; asking the sidecar to retry");
            return Status(Retry);
        }
    }

    public static async Task<IResult> DeliverPolicyEvent(HttpContext context, PolicyGrid.Runtime.Execution.PolicyTeardown teardown, ILoggerFactory logs, CancellationToken ct) =>
        Status(await PolicyEventHandler.HandleAsync(context, teardown, logs.CreateLogger(typeof(EvaluationSubscription)), ct));

    private static IResult Status(string status) => Results.Json(new JsonObject { ["status"] = status });
}
