using System.Text.Json.Nodes;
using CloudNative.CloudEvents;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Executors;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Api.Node;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Events;

/// <summary>What became of one evaluation event, in the terms a pub/sub delivery understands.</summary>
public enum EventDisposition
{
    /// <summary>Handled: a decision (a result or the policy's error) was published.</summary>
    Success,

    /// <summary>A transient failure (store, sidecar or pool overloaded): deliver it again later.</summary>
    Retry,

    /// <summary>Malformed: it can never succeed, so it went to the dead-letter topic instead.</summary>
    Drop,
}

/// <summary>The outcome of handling one event: what to tell the deliverer, and what was published.</summary>
public sealed record EvaluationOutcome(EventDisposition Disposition, string? CorrelationId, JsonObject? Decision, PolicyGridException? Problem);

/// <summary>
/// The one handler of evaluation events, shared by the Dapr executor app (its pub/sub subscription)
/// and the embedded server's <c>POST /events</c>. It runs the policy once and publishes the decision
/// to <c>policy-decisions</c> with the request's correlation id:
/// <list type="bullet">
/// <item>the policy ran → <c>{"correlation_id", "policy_rule_uri", "success": true, "data": ...}</c>;</item>
/// <item>the call or the policy failed (400, 404, 410, 422, 504 ...) → an error decision
/// <c>{"success": false, "status", "code", "message"}</c>, and the event counts as handled, because
/// delivering it again would fail the same way forever;</item>
/// <item>a backend was down or the pool full (429, 502, 503) → nothing is published and the event
/// is retried (after the retries it lands in the dead-letter topic);</item>
/// <item>the event itself is malformed → it is published to the dead-letter topic with the reason, and dropped.</item>
/// </list>
/// </summary>
public sealed class EvaluationEventHandler(ExecutorDispatch executors, IEventBus bus, IOptions<PolicyRuntimeOptions> runtime, ILogger<EvaluationEventHandler> logger,
    NodeCallLedger ledger)
{
    /// <param name="poster">Who sent the event, when the route knows (a token on <c>POST /events</c>): the decision log records
    /// them. Without one (an open server, a pub/sub delivery, which carries no user) it records <c>event:&lt;source&gt;</c>.</param>
    public async Task<EvaluationOutcome> HandleAsync(CloudEvent cloudEvent, CancellationToken ct, CallerIdentity? poster = null)
    {
        EvaluationEvent evaluation;
        try
        {
            evaluation = EvaluationEvent.From(cloudEvent, TimeoutLimit.Of(runtime.Value));
        }
        catch (PolicyGridException e) when (e.Status == 400)
        {
            return await RejectAsync(e, CloudEventReader.ToJson(cloudEvent), cloudEvent.Id, ct);
        }

        JsonObject decision;
        try
        {
            // Events run on this server's own built-in executor, as the node API does.
            var executor = executors.ExecutorFor(ExecutorsApi.BuiltInId, ExecutorsApi.BuiltInHostUri);
            var source = "event:" + evaluation.Source;
            var caller = poster ?? new CallerIdentity(source);
            // A redelivered event (its answer to the deliverer was lost, or the decision could not be published) gets
            // the first run's outcome: the policy runs once per event, which its source and id name (CloudEvents), and per poster.
            var result = await ledger.RunOnceAsync(OnceKey(evaluation.EventId), "event", new CallerIdentity(poster is null ? source : $"{poster.Name}\n{source}"),
                CanonicalJson.Sha256(evaluation.Request.ToNodeBody()), run => executor.ExecuteAsync(evaluation.Request, caller, run), ct,
                reused: $"CloudEvent id {Quoted(evaluation.EventId)} from source '{evaluation.Source}' was already used for an event with other data; " +
                    "an id names one event (a redelivery carries the same data), so a new event needs a new id");
            decision = Decision(evaluation, success: true);
            decision["data"] = result.Output.DeepClone();
            if (result.Deprecated) decision["deprecated"] = true;
        }
        catch (PolicyGridException e) when (IsTransient(e))
        {
            logger.LogWarning("Evaluation {CorrelationId} of {Policy} will be retried: {Status} {Code} {Message}",
                evaluation.CorrelationId, evaluation.Request.PolicyRuleUri, e.Status, e.Code, e.Message);
            return new EvaluationOutcome(EventDisposition.Retry, evaluation.CorrelationId, null, e);
        }
        catch (PolicyGridException e)
        {
            decision = Decision(evaluation, success: false);
            decision["status"] = e.Status;
            decision["code"] = e.Code;
            decision["message"] = e.Message;
        }
        await bus.PublishAsync(Topics.Decisions, decision, ct);
        return new EvaluationOutcome(EventDisposition.Success, evaluation.CorrelationId, decision, null);
    }

    /// <summary>
    /// A delivery that is not a readable event at all (or not an evaluation request): keep it whole,
    /// with the reason, on the dead-letter topic, so someone can fix and resend it.
    /// </summary>
    public async Task<EvaluationOutcome> RejectAsync(PolicyGridException reason, string rawEvent, string? eventId, CancellationToken ct)
    {
        JsonNode? raw;
        try { raw = JsonNode.Parse(rawEvent); }
        catch (System.Text.Json.JsonException) { raw = JsonValue.Create(rawEvent); }
        var letter = new JsonObject
        {
            ["reason"] = reason.Message,
            ["code"] = reason.Code,
            ["event_id"] = eventId,
            ["event"] = raw,
        };
        logger.LogWarning("Evaluation event {EventId} is malformed and goes to {Topic}: {Reason}", eventId, Topics.DeadLetter, reason.Message);
        await bus.PublishAsync(Topics.DeadLetter, letter, ct);
        return new EvaluationOutcome(EventDisposition.Drop, null, null, reason);
    }

    private static JsonObject Decision(EvaluationEvent evaluation, bool success) => new()
    {
        [EventTypes.CorrelationId] = evaluation.CorrelationId,
        ["event_id"] = evaluation.EventId,
        ["policy_rule_uri"] = evaluation.Request.PolicyRuleUri,
        ["success"] = success,
    };

    // An id for a message: a long one (CloudEvents sets no limit) by its start.
    private static string Quoted(string id) => id.Length <= NodeCallLedger.MaxIdLength ? $"'{id}'" : $"'{id[..NodeCallLedger.MaxIdLength]}...' ({id.Length} characters)";

    // An event id as the ledger keys it: ids past a call id's length are kept as their hash.
    private static string OnceKey(string eventId) =>
        eventId.Length <= NodeCallLedger.MaxIdLength ? eventId : CanonicalJson.Sha256(JsonValue.Create(eventId));

    /// <summary>Failures of the platform, not of the request or the policy: worth delivering again.</summary>
    public static bool IsTransient(PolicyGridException e) => e.Status is 429 or 502 or 503;
}
