using System.Text.Json;
using System.Text.Json.Nodes;
using CloudNative.CloudEvents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;
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
    public static EvaluationEvent From(CloudEvent cloudEvent)
    {
        var data = DataObject(cloudEvent);
        var errors = new List<FieldError>();
        var uri = RequiredString(data, "policy_rule_uri", errors);
        if (uri is not null && !PolicyUri.TryParse(uri, out _, out var uriError)) errors.Add(new("data.policy_rule_uri", uriError));
        var input = data["input_data"] as JsonObject;
        if (input is null) errors.Add(new("data.input_data", data.ContainsKey("input_data") ? $"must be an object, not {Describe(data["input_data"])}" : "is required"));
        var parameters = OptionalObject(data, "parameters", errors);
        var settings = OptionalObject(data, "settings", errors);
        var contextKey = OptionalString(data, "context_key", errors);
        var correlation = OptionalString(data, EventTypes.CorrelationId, errors);
        double? timeout = null;
        if (data["timeout_seconds"] is { } t)
        {
            if (t is JsonValue tv && tv.TryGetValue<double>(out var seconds) && seconds > 0) timeout = seconds;
            else errors.Add(new("data.timeout_seconds", $"must be a positive number, not {t.ToJsonString()}"));
        }
        if (errors.Count > 0) throw Problems.Validation(errors);
        var request = new ExecutionRequest(uri!, (JsonObject)input!.DeepClone(), Copy(parameters), Copy(settings), contextKey, timeout);
        return new EvaluationEvent(request, correlation ?? cloudEvent.Id!, cloudEvent.Id!, cloudEvent.Source?.ToString() ?? "");
    }

    /// <summary>The event's data as a JSON object, whichever way the formatter decoded it.</summary>
    public static JsonObject DataObject(CloudEvent cloudEvent)
    {
        var node = cloudEvent.Data switch
        {
            null => null,
            JsonElement e => JsonNode.Parse(e.GetRawText()),
            JsonNode n => n.DeepClone(),
            byte[] bytes => Parse(bytes),
            string s => Parse(System.Text.Encoding.UTF8.GetBytes(s)),
            var other => throw Problems.BadRequest($"CloudEvent data of type {other.GetType().Name} is not JSON"),
        };
        return node as JsonObject
            ?? throw Problems.BadRequest(node is null
                ? "CloudEvent has no data; expected an execute_policy body {\"policy_rule_uri\", \"input_data\", ...}"
                : $"CloudEvent data must be a JSON object (an execute_policy body), not {Describe(node)}");
    }

    private static JsonNode? Parse(byte[] bytes)
    {
        try { return JsonNode.Parse(bytes); }
        catch (JsonException e) { throw Problems.BadRequest($"CloudEvent data is not valid JSON: {e.Message}"); }
    }

    private static string? RequiredString(JsonObject data, string name, List<FieldError> errors)
    {
        if (data[name] is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0) return s;
        errors.Add(new($"data.{name}", data.ContainsKey(name) ? $"must be a non-empty string, not {Describe(data[name])}" : "is required"));
        return null;
    }

    private static string? OptionalString(JsonObject data, string name, List<FieldError> errors)
    {
        if (!data.TryGetPropertyValue(name, out var node) || node is null) return null;
        if (node is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0) return s;
        errors.Add(new($"data.{name}", $"must be a non-empty string, not {Describe(node)}"));
        return null;
    }

    private static JsonObject? OptionalObject(JsonObject data, string name, List<FieldError> errors)
    {
        if (!data.TryGetPropertyValue(name, out var node) || node is null) return null;
        if (node is JsonObject o) return o;
        errors.Add(new($"data.{name}", $"must be an object, not {Describe(node)}"));
        return null;
    }

    private static JsonObject? Copy(JsonObject? o) => o is null ? null : (JsonObject)o.DeepClone();

    private static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "an array",
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            _ => "null",
        },
        _ => "a value",
    };
}
