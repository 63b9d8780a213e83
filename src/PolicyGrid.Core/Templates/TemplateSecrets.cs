using System.Text.Json.Nodes;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Templates;

/// <summary>
/// Template fields marked <c>"secret": true</c> are write-only: stored and passed to the policy,
/// but every read and query answers them as <see cref="Mask"/>. Redaction always works on a copy,
/// so the stored document (which the runtime needs) is never touched.
/// </summary>
public static class TemplateSecrets
{
    public const string Mask = "***";

    /// <summary>A copy of <paramref name="values"/> with every secret field (nested ones too) answered as "***".</summary>
    public static JsonObject Redact(JsonObject template, JsonObject values)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(values);
        var copy = (JsonObject)values.DeepClone();
        RedactObject(template, copy);
        return copy;
    }

    /// <summary>True when the template (or any nested spec) marks a field secret.</summary>
    public static bool HasSecrets(JsonObject template)
    {
        ArgumentNullException.ThrowIfNull(template);
        return template.Any(p => p.Value is JsonObject spec && SpecHasSecrets(spec));
    }

    private static bool SpecHasSecrets(JsonObject spec) =>
        TemplateValidator.IsTrue(spec["secret"])
        || (spec["items"] is JsonObject items && SpecHasSecrets(items))
        || (spec["properties"] is JsonObject props && HasSecrets(props));

    /// <summary>Where a PolicyRule document may hold secrets (for <see cref="RedactedQuery"/>).</summary>
    public static readonly IReadOnlyList<string> PolicyRuleSecretPaths = ["policy_settings", "policy_parameters"];

    /// <summary>Where a FunctionDeployment document may hold secrets: its policy snapshot's settings and parameters.</summary>
    public static readonly IReadOnlyList<string> FunctionSecretPaths = ["function_policy_data.policy_settings", "function_policy_data.policy_parameters"];

    /// <summary>
    /// A copy of a PolicyRule document (as JSON) fit for reads and queries: <c>policy_settings</c>
    /// redacted by <c>policy_settings_schema</c>, <c>policy_parameters</c> by <c>policy_parameters_schema</c>.
    /// </summary>
    public static JsonObject RedactPolicyRule(JsonObject policyRule)
    {
        ArgumentNullException.ThrowIfNull(policyRule);
        var copy = (JsonObject)policyRule.DeepClone();
        RedactPair(copy, "policy_settings_schema", "policy_settings");
        RedactPair(copy, "policy_parameters_schema", "policy_parameters");
        return copy;
    }

    /// <summary>
    /// A copy of a FunctionDeployment document fit for reads: the policy snapshot in
    /// <c>function_policy_data</c> is redacted as <see cref="RedactPolicyRule"/> does.
    /// </summary>
    public static JsonObject RedactFunction(JsonObject function)
    {
        ArgumentNullException.ThrowIfNull(function);
        var copy = (JsonObject)function.DeepClone();
        if (copy["function_policy_data"] is JsonObject snapshot)
            copy["function_policy_data"] = RedactPolicyRule(snapshot);
        return copy;
    }

    /// <summary>
    /// Undoes what a read did to a document the caller sends back: a secret field whose incoming
    /// value is exactly "***" keeps its stored value, so GET-then-PUT does not overwrite secrets
    /// with the mask. Returns a copy of <paramref name="incoming"/>.
    /// </summary>
    public static JsonObject Restore(JsonObject template, JsonObject incoming, JsonObject stored)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(incoming);
        ArgumentNullException.ThrowIfNull(stored);
        var copy = (JsonObject)incoming.DeepClone();
        RestoreObject(template, copy, stored);
        return copy;
    }

    /// <summary><see cref="Restore"/> for both settings and parameters of a PolicyRule document (templates taken from <paramref name="incoming"/>).</summary>
    public static JsonObject RestorePolicyRule(JsonObject incoming, JsonObject stored)
    {
        ArgumentNullException.ThrowIfNull(incoming);
        ArgumentNullException.ThrowIfNull(stored);
        var copy = (JsonObject)incoming.DeepClone();
        foreach (var (schemaField, valuesField) in new[] { ("policy_settings_schema", "policy_settings"), ("policy_parameters_schema", "policy_parameters") })
        {
            if (copy[schemaField] is JsonObject template && copy[valuesField] is JsonObject values && stored[valuesField] is JsonObject old)
                copy[valuesField] = Restore(template, values, old);
        }
        return copy;
    }

    private static void RedactPair(JsonObject document, string schemaField, string valuesField)
    {
        if (document[schemaField] is JsonObject template && document[valuesField] is JsonObject values)
            RedactObject(template, values);
    }

    private static void RedactObject(JsonObject template, JsonObject values)
    {
        foreach (var (field, specNode) in template)
        {
            if (specNode is not JsonObject spec || !values.TryGetPropertyValue(field, out var value) || value is null) continue;
            if (RedactInPlace(spec, value)) values[field] = JsonValue.Create(Mask);
        }
    }

    /// <summary>Redacts inside <paramref name="value"/>; true when the whole value must be replaced by the mask.</summary>
    private static bool RedactInPlace(JsonObject spec, JsonNode value)
    {
        if (TemplateValidator.IsTrue(spec["secret"])) return true;
        if (value is JsonObject obj && spec["properties"] is JsonObject properties)
            RedactObject(properties, obj);
        else if (value is JsonArray array && spec["items"] is JsonObject items)
        {
            for (var i = 0; i < array.Count; i++)
                if (array[i] is { } element && RedactInPlace(items, element))
                    array[i] = JsonValue.Create(Mask);
        }
        return false;
    }

    private static void RestoreObject(JsonObject template, JsonObject incoming, JsonObject stored)
    {
        foreach (var (field, specNode) in template)
        {
            if (specNode is not JsonObject spec || !incoming.TryGetPropertyValue(field, out var value) || value is null) continue;
            stored.TryGetPropertyValue(field, out var old);
            if (TemplateValidator.IsTrue(spec["secret"]))
            {
                if (JsonValues.TryString(value, out var s) && s == Mask && old is not null)
                    incoming[field] = old.DeepClone();
            }
            else if (value is JsonObject obj && old is JsonObject oldObj && spec["properties"] is JsonObject properties)
                RestoreObject(properties, obj, oldObj);
        }
    }
}
