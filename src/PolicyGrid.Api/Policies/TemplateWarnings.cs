using System.Text.Json.Nodes;
using PolicyGrid.Api.Documents;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Querying;
using PolicyGrid.Core.Templates;

namespace PolicyGrid.Api.Policies;

/// <summary>
/// Template keys a create or update wrote that check nothing: a slip for a keyword (<c>requird</c>, <c>maxLength</c>),
/// which left the field optional or unbounded, a keyword its spec's type never reads (<c>pattern</c> on a number), or
/// choices none of which is of the type, which refuse every value.
/// Templates may carry other keys (<c>default</c>, <c>example</c>) and stored ones hold such keys, so they are
/// answered as warnings, as fields a document lacks are (<see cref="IgnoredFields"/>), not refused.
/// </summary>
public static class TemplateWarnings
{
    /// <summary>One warning per inert key in the templates of <paramref name="rule"/> that differ from <paramref name="before"/>'s (all, on create).</summary>
    public static IReadOnlyList<string> For(PolicyRule? before, PolicyRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        var warnings = new List<string>();
        Add(warnings, before?.PolicyInputSchema, rule.PolicyInputSchema, "policy_input_schema");
        Add(warnings, before?.PolicyOutputSchema, rule.PolicyOutputSchema, "policy_output_schema");
        Add(warnings, before?.PolicySettingsSchema, rule.PolicySettingsSchema, "policy_settings_schema");
        Add(warnings, before?.PolicyParametersSchema, rule.PolicyParametersSchema, "policy_parameters_schema");
        if (before is null || !JsonValues.DeepEquals(before.ManagementCommandsSchema, rule.ManagementCommandsSchema))
        {
            for (var i = 0; i < rule.ManagementCommandsSchema.Count; i++)
                if (rule.ManagementCommandsSchema[i]?["schema"] is JsonObject schema)
                    Add(warnings, null, schema, $"management_commands_schema[{i}].schema");
        }
        return warnings;
    }

    private static void Add(List<string> warnings, JsonObject? before, JsonObject template, string path)
    {
        if (template.Count == 0 || (before is not null && JsonValues.DeepEquals(before, template))) return;
        foreach (var inert in TemplateValidator.InertKeys(template, path))
        {
            if (inert.Reason is { } reason)
                warnings.Add($"'{inert.Path}.{inert.Key}' {reason}");
            else if (IgnoredFields.Closest(inert.Key, TemplateValidator.Keywords) is { } meant)
                warnings.Add($"'{inert.Path}.{inert.Key}' is not a template keyword and checks nothing; did you mean '{meant}'?");
        }
    }
}
