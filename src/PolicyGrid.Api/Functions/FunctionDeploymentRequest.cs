using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;

namespace PolicyGrid.Api.Functions;

/// <summary>
/// The body of <c>POST /function/deployments/create/{executor_id}</c>, checked field by field so a bad body answers
/// one 400 naming every wrong field (by the names the caller used) before anything is looked up or deployed.
/// </summary>
public sealed record FunctionDeploymentRequest(
    string Name,
    string PolicyRuleUri,
    JsonObject PolicyRuleParameters,
    int Replicas,
    JsonObject Autoscaling,
    JsonObject FunctionMetadata,
    IReadOnlyList<string> FunctionTags)
{
    public const int MaxReplicas = 1000;

    /// <summary>The fields a deployment body may have, and those of its <c>autoscaling</c> object.</summary>
    public static readonly IReadOnlySet<string> Fields = new HashSet<string>(StringComparer.Ordinal)
        { "name", "policy_rule_uri", "policy_rule_parameters", "replicas", "autoscaling", "function_metadata", "function_tags" };
    public static readonly IReadOnlySet<string> AutoscalingFields = new HashSet<string>(StringComparer.Ordinal)
        { "enabled", "min_replicas", "max_replicas", "target_cpu_utilization_percentage" };

    /// <summary>Warnings for the fields of <paramref name="body"/> (and of its autoscaling) that a deployment does not have: they were ignored.</summary>
    public static IReadOnlyList<string> IgnoredFieldWarnings(JsonObject body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var warnings = Documents.IgnoredFields.Warnings(body, Fields, "a function deployment");
        return body["autoscaling"] is JsonObject scaling
            ? [.. warnings, .. Documents.IgnoredFields.Warnings(scaling, AutoscalingFields, "autoscaling", "autoscaling.")]
            : warnings;
    }

    public static FunctionDeploymentRequest Parse(JsonObject body)
    {
        var errors = new List<FieldError>();
        var name = Text(body, "name", errors, required: true);
        if (name.Length > 0 && Identifiers.Check(errors, "name", name) && name.Contains('#', StringComparison.Ordinal))
            errors.Add(new("name", $"'{name}' must not contain '#'"));
        var uri = Text(body, "policy_rule_uri", errors, required: true);
        var parameters = Object(body, "policy_rule_parameters", errors);
        var replicas = Integer(body, "replicas", 1, errors);
        var autoscaling = Object(body, "autoscaling", errors);
        var enabled = Boolean(autoscaling, "enabled", "autoscaling.enabled", errors);
        // min_replicas defaults to replicas and max_replicas to the larger of the two, but a bound the caller did not send
        // never contradicts one they did: replicas 5 with only max_replicas 3 is min 3 (replicas kept within 3..3 below),
        // not a complaint about a min_replicas nobody sent.
        var maxSent = Given(autoscaling, "max_replicas") is not null;
        var max = Integer(autoscaling, "max_replicas", 0, errors, "autoscaling.max_replicas");
        var min = Integer(autoscaling, "min_replicas", maxSent && max > 0 ? Math.Min(replicas, max) : replicas, errors, "autoscaling.min_replicas");
        if (!maxSent || max == 0) max = Math.Max(replicas, min);
        var target = Integer(autoscaling, "target_cpu_utilization_percentage", 80, errors, "autoscaling.target_cpu_utilization_percentage", max: 100);
        if (min > max) errors.Add(new("autoscaling.min_replicas", $"{min} is greater than autoscaling.max_replicas {max}"));
        // With autoscaling on, the host keeps replicas within min..max (docs/functions.md); storing the clamped count
        // keeps the document, the instances started and the Dapr actors allotted in agreement.
        else if (enabled) replicas = Math.Clamp(replicas, min, max);
        var metadata = Object(body, "function_metadata", errors);
        var tags = new List<string>();
        if (Given(body, "function_tags") is { } t)
        {
            if (t is not JsonArray list) errors.Add(new("function_tags", $"must be a list of strings, not {JsonBodyKind(t)}"));
            else
            {
                for (var i = 0; i < list.Count; i++)
                {
                    if (list[i] is JsonValue v && v.GetValueKind() == JsonValueKind.String) tags.Add(v.GetValue<string>());
                    else errors.Add(new($"function_tags[{i}]", $"must be a string, not {JsonBodyKind(list[i])}"));
                }
            }
        }
        if (errors.Count > 0) throw Problems.Validation(errors);
        var scaling = new JsonObject
        {
            ["enabled"] = enabled,
            ["min_replicas"] = min,
            ["max_replicas"] = max,
            ["target_cpu_utilization_percentage"] = target,
        };
        return new FunctionDeploymentRequest(name, uri, parameters, replicas, scaling, metadata, tags);
    }

    private static JsonNode? Given(JsonObject body, string name) =>
        body.TryGetPropertyValue(name, out var node) && node is not null && !(node is JsonValue v && v.GetValueKind() == JsonValueKind.Null) ? node : null;

    private static string Text(JsonObject body, string name, List<FieldError> errors, bool required)
    {
        var node = Given(body, name);
        if (node is null) { if (required) errors.Add(new(name, "is required")); return ""; }
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().Trim().Length > 0) return v.GetValue<string>();
        errors.Add(new(name, $"must be a non-empty string, not {JsonBodyKind(node)}"));
        return "";
    }

    private static JsonObject Object(JsonObject body, string name, List<FieldError> errors)
    {
        var node = Given(body, name);
        if (node is null) return [];
        if (node is JsonObject o) return (JsonObject)o.DeepClone();
        errors.Add(new(name, $"must be an object, not {JsonBodyKind(node)}"));
        return [];
    }

    private static int Integer(JsonObject body, string name, int fallback, List<FieldError> errors, string? path = null, int max = MaxReplicas)
    {
        path ??= name;
        var node = Given(body, name);
        if (node is null) return fallback;
        if (PolicyGrid.Core.Querying.JsonValues.IsBeyond(node, decimal.MinValue, decimal.MaxValue))
        {
            errors.Add(new(path, $"is out of range: must be an integer from 1 to {max}, not {node.ToJsonString()}"));
            return fallback;
        }
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<decimal>(out var n) || n != decimal.Truncate(n))
        {
            errors.Add(new(path, $"must be an integer, not {JsonBodyKind(node)}"));
            return fallback;
        }
        if (n < 1 || n > max)
        {
            errors.Add(new(path, $"must be from 1 to {max}, not {n}"));
            return fallback;
        }
        return (int)n;
    }

    private static bool Boolean(JsonObject body, string name, string path, List<FieldError> errors)
    {
        var node = Given(body, name);
        if (node is null) return false;
        if (node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return v.GetValue<bool>();
        errors.Add(new(path, $"must be true or false, not {JsonBodyKind(node)}"));
        return false;
    }

    private static string JsonBodyKind(JsonNode? node) => node switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String => $"the string \"{v.GetValue<string>()}\"",
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => $"the number {v.ToJsonString()}",
        _ => "a JSON " + Envelope.JsonBody.Describe(node),
    };
}
