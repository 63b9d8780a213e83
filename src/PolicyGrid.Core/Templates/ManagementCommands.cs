using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Templates;

/// <summary>
/// A management call checked against the policy's <c>management_commands_schema</c> before the policy sees it, the
/// same way wherever it runs (Type 2, a Type 4 function, embedded or on Dapr): an action the policy does not list is a
/// 400 naming the known ones, data that breaks the command's schema a 400 naming <c>data.…</c> paths. A policy that
/// lists no commands takes any action.
/// </summary>
public static class ManagementCommands
{
    public static void Ensure(JsonArray? commands, string policyRuleUri, string action, JsonNode? data)
    {
        if (commands is not { Count: > 0 }) return;
        var command = commands.OfType<JsonObject>()
            .FirstOrDefault(c => c["name"]?.GetValueKind() == JsonValueKind.String && c["name"]!.GetValue<string>() == action);
        if (command is null)
        {
            var known = string.Join(", ", commands.OfType<JsonObject>().Select(c => c["name"]?.ToString()));
            throw Problems.Validation("action", $"'{action}' is not a management command of {policyRuleUri} (known: {known})");
        }
        if (command["schema"] is JsonObject { Count: > 0 } schema) TemplateValidator.Ensure(schema, data, "data");
    }

    /// <summary>
    /// Whether the policy declares <paramref name="action"/> <c>read_only</c>: it changes nothing on the instance, so a
    /// Type 4 host need not journal it for instances that start later (a polled <c>status</c> would fill the journal).
    /// </summary>
    public static bool IsReadOnly(JsonArray? commands, string action) =>
        commands?.OfType<JsonObject>().FirstOrDefault(c => c["name"]?.GetValueKind() == JsonValueKind.String && c["name"]!.GetValue<string>() == action)
            is { } command && command["read_only"]?.GetValueKind() == JsonValueKind.True;
}
