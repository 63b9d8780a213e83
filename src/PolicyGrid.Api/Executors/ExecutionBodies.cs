using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime;

namespace PolicyGrid.Api.Executors;

/// <summary>
/// Reads the execute_policy and management bodies of the contract, reporting every bad field at
/// once, so the same rules hold on <c>/executor/{id}/...</c> and on the node API.
/// </summary>
public static class ExecutionBodies
{
    /// <summary>The fields of an execute_policy body (see <see cref="Execution"/>) and of a management body.</summary>
    public static readonly IReadOnlySet<string> ExecutionFields = new HashSet<string>(StringComparer.Ordinal)
        { "policy_rule_uri", "input_data", "parameters", "settings", "context_key", "timeout_seconds" };
    public static readonly IReadOnlySet<string> ManagementFields = new HashSet<string>(StringComparer.Ordinal)
        { "policy_rule_uri", "action", "data", "parameters", "settings", "timeout_seconds" };

    public static ExecutionRequest Execution(JsonObject body, TimeoutLimit limit)
    {
        var errors = new List<FieldError>();
        var uri = PolicyUriField(body, errors);
        var input = ObjectField(body, "input_data", errors, required: true);
        var parameters = ObjectField(body, "parameters", errors, required: false);
        var settings = ObjectField(body, "settings", errors, required: false);
        var contextKey = ContextKeyField(body, errors);
        var timeout = TimeoutField(body, errors, limit);
        if (errors.Count > 0) throw Problems.Validation(errors);
        return new ExecutionRequest(uri, input!, parameters, settings, contextKey, timeout);
    }

    /// <summary>Most characters in a context_key: a key names one stored context, it does not carry data.</summary>
    public const int MaxContextKeyLength = 1024;

    // Empty means "the policy's own context" (its URI); control characters, very long keys and keys in the function
    // host's space (ContextKeys) are refused.
    private static string? ContextKeyField(JsonObject body, List<FieldError> errors)
    {
        var key = StringField(body, "context_key", errors);
        if (key is null) return null;
        if (key.Length > MaxContextKeyLength) errors.Add(new("context_key", $"is {key.Length} characters long; at most {MaxContextKeyLength}"));
        else if (key.Any(char.IsControl)) errors.Add(new("context_key", "must not contain control characters (such as NUL)"));
        else if (ContextKeys.ReservedBecause(key) is { } reserved) errors.Add(new("context_key", reserved));
        return key;
    }

    public static ManagementRequest Management(JsonObject body, TimeoutLimit limit)
    {
        var errors = new List<FieldError>();
        var uri = PolicyUriField(body, errors);
        var action = StringField(body, "action", errors);
        if (action is null && !errors.Any(e => e.Path == "action")) errors.Add(new("action", "is required"));
        else if (action is { Length: 0 }) errors.Add(new("action", "must not be empty"));
        var data = ObjectField(body, "data", errors, required: false) ?? [];
        var parameters = ObjectField(body, "parameters", errors, required: false);
        var settings = ObjectField(body, "settings", errors, required: false);
        var timeout = TimeoutField(body, errors, limit);
        if (errors.Count > 0) throw Problems.Validation(errors);
        return new ManagementRequest(uri, action!, data, parameters, settings, timeout);
    }

    public static JsonObject ToJson(ExecutionRequest r)
    {
        var o = new JsonObject { ["policy_rule_uri"] = r.PolicyRuleUri, ["input_data"] = r.InputData.DeepClone() };
        if (r.Parameters is not null) o["parameters"] = r.Parameters.DeepClone();
        if (r.Settings is not null) o["settings"] = r.Settings.DeepClone();
        if (r.ContextKey is not null) o["context_key"] = r.ContextKey;
        if (r.TimeoutSeconds is not null) o["timeout_seconds"] = r.TimeoutSeconds;
        return o;
    }

    private static string PolicyUriField(JsonObject body, List<FieldError> errors)
    {
        var text = StringField(body, "policy_rule_uri", errors);
        if (text is null)
        {
            if (!errors.Any(e => e.Path == "policy_rule_uri")) errors.Add(new("policy_rule_uri", "is required"));
            return "";
        }
        if (!PolicyUri.TryParse(text, out _, out var error)) errors.Add(new("policy_rule_uri", error));
        return text;
    }

    private static string? StringField(JsonObject body, string name, List<FieldError> errors)
    {
        if (!body.TryGetPropertyValue(name, out var node) || IsNull(node)) return null;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String) return v.GetValue<string>();
        errors.Add(new(name, $"must be a string, not a JSON {JsonBody.Describe(node)}"));
        return null;
    }

    private static JsonObject? ObjectField(JsonObject body, string name, List<FieldError> errors, bool required)
    {
        if (!body.TryGetPropertyValue(name, out var node) || IsNull(node))
        {
            if (required) errors.Add(new(name, "is required (a JSON object)"));
            return null;
        }
        if (node is JsonObject o) return (JsonObject)o.DeepClone();
        errors.Add(new(name, $"must be a JSON object, not a JSON {JsonBody.Describe(node)}"));
        return null;
    }

    private static double? TimeoutField(JsonObject body, List<FieldError> errors, TimeoutLimit limit)
    {
        if (!body.TryGetPropertyValue("timeout_seconds", out var node) || IsNull(node)) return null;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.GetValue<double>() is var seconds)
        {
            // A value the clock cannot hold (under one tick) would be a deadline of zero, refused only once it ran.
            if (seconds > 0 && seconds <= limit.MaxSeconds && TimeSpan.FromSeconds(seconds) > TimeSpan.Zero) return seconds;
            var shown = seconds.ToString(CultureInfo.InvariantCulture);
            errors.Add(new("timeout_seconds", seconds > 0 && seconds <= limit.MaxSeconds
                ? $"must be at least 0.0000001 seconds (one tick of the clock), not {shown}"
                : $"must be more than 0 and at most {limit.MaxSeconds.ToString(CultureInfo.InvariantCulture)} ({limit.Setting}), not {shown}"));
            return null;
        }
        errors.Add(new("timeout_seconds", $"must be a number of seconds, not a JSON {JsonBody.Describe(node)}"));
        return null;
    }

    private static bool IsNull(JsonNode? node) => node is null || (node is JsonValue v && v.GetValueKind() == JsonValueKind.Null);
}

/// <summary>
/// The longest <c>timeout_seconds</c> a call may ask for, and the setting that says so: this server's own
/// <c>Execution:MaxTimeout</c>, which its runtime holds every deadline to. A call forwarded to an executor node is
/// held to it as well (and there to the node's own), so the limit a caller is told is the one that refused it.
/// </summary>
public sealed record TimeoutLimit(double MaxSeconds, string Setting)
{
    public static TimeoutLimit Of(PolicyRuntimeOptions runtime) =>
        new(runtime.Execution.MaxTimeout.TotalSeconds, $"{PolicyRuntimeOptions.Section}:Execution:MaxTimeout");
}
