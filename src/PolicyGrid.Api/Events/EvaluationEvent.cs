using System.Text.Json;
using System.Text.Json.Nodes;
using CloudNative.CloudEvents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Api.Executors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Events;

/// <summary>
/// An evaluation request carried by a CloudEvent on <c>policy-evaluations</c>: its data is an
/// execute_policy body (<c>policy_rule_uri</c>, <c>input_data</c>, optional <c>parameters</c>,
/// <c>settings</c>, <c>context_key</c>, <c>timeout_seconds</c>) plus an optional <c>correlation_id</c>;
/// without one, the event's own id correlates the decision.
/// </summary>
public sealed record EvaluationEvent(ExecutionRequest Request, string CorrelationId, string EventId, string Source)
{
    /// <summary>Longest <c>correlation_id</c> taken.</summary>
    public const int MaxCorrelationIdLength = 1024;

    public static EvaluationEvent From(CloudEvent cloudEvent, TimeoutLimit limit)
    {
        var data = DataObject(cloudEvent);
        string? correlation = null;
        if (data.TryGetPropertyValue(EventTypes.CorrelationId, out var c) && c is not null)
        {
            if (c is not JsonValue cv || !cv.TryGetValue<string>(out correlation))
                throw Problems.Validation(EventTypes.CorrelationId, $"must be a non-empty string, not {Article(JsonBody.Describe(c))}");
            if (correlation.Length == 0) throw Problems.Validation(EventTypes.CorrelationId, "must not be empty");
            // Read back as a query parameter (GET /events/decisions?correlation_id=): one of some 8 KiB was published and then
            // could never be read, its request line refused (414).
            if (correlation.Length > MaxCorrelationIdLength)
                throw Problems.Validation(EventTypes.CorrelationId,
                    $"is {correlation.Length} characters, more than the {MaxCorrelationIdLength} a correlation id may have (it is read back in a URL)");
        }
        // The same reader as POST /executor/{id}/execute_policy and the node API: one set of rules for the body.
        var request = ExecutionBodies.Execution(data, limit);
        return new EvaluationEvent(request, correlation ?? cloudEvent.Id!, cloudEvent.Id!, cloudEvent.Source?.ToString() ?? "");
    }

    /// <summary>The event's data as a JSON object, whichever way the formatter decoded it.</summary>
    public static JsonObject DataObject(CloudEvent cloudEvent)
    {
        var node = cloudEvent.Data switch
        {
            null => null,
            JsonElement e => FromElement(e),
            JsonNode n => n.DeepClone(),
            byte[] bytes => Parse(bytes),
            string s => Parse(System.Text.Encoding.UTF8.GetBytes(s)),
            var other => throw Problems.BadRequest($"CloudEvent data of type {other.GetType().Name} is not JSON"),
        };
        return node as JsonObject
            ?? throw Problems.BadRequest(node is null
                ? "CloudEvent has no data; expected an execute_policy body {\"policy_rule_uri\", \"input_data\", ...}"
                : $"CloudEvent data must be a JSON object (an execute_policy body), not {Article(JsonBody.Describe(node))}");
    }

    private static JsonNode? Parse(byte[] bytes)
    {
        try { return FromElement(JsonElement.Parse(bytes)); }
        catch (JsonException e) { throw Problems.BadRequest($"CloudEvent data is not valid JSON: {e.Message}"); }
    }

    /// <summary>Event data as nodes, once every string in it is known to be valid text (a 400 naming the one that is not).</summary>
    private static JsonNode? FromElement(JsonElement data)
    {
        JsonStringCheck.Require(data, "CloudEvent data");
        return JsonNode.Parse(data.GetRawText());
    }

    private static string Article(string kind) => kind is "null" ? kind : (kind[0] is 'a' or 'o' ? "an " : "a ") + kind;
}
