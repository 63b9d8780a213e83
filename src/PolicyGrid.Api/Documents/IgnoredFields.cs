using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Documents;

/// <summary>
/// Fields a body named that what it describes does not have: a whole document (a create, or a PUT without operators,
/// whose stored document holds exactly its type's fields) or a call (execute_policy, management, execute_graph,
/// whose known fields are listed by its route). They were dropped or ignored: refusing them would break clients that
/// send extras, and saying nothing hides a typo (<c>policy_paramters</c>) until the policy misbehaves. They are
/// answered as <c>warnings</c>, each naming the field and, when a known field is one slip away, that one.
/// </summary>
public static class IgnoredFields
{
    /// <summary>One warning per top-level field of <paramref name="body"/> that <paramref name="stored"/> does not have.</summary>
    public static IReadOnlyList<string> Warnings(JsonObject body, JsonObject stored, string kind)
    {
        ArgumentNullException.ThrowIfNull(stored);
        return Warnings(body, stored.Select(p => p.Key).ToHashSet(StringComparer.Ordinal), kind);
    }

    /// <summary>
    /// One warning per field of <paramref name="body"/> not among <paramref name="known"/> (named
    /// <paramref name="prefix"/>field, for an object inside a body), saying it <paramref name="fate"/>. Nothing is
    /// allocated when every field is known (execute_policy bodies are checked on every call).
    /// </summary>
    public static IReadOnlyList<string> Warnings(JsonObject body, IReadOnlySet<string> known, string kind, string prefix = "", string fate = "was not stored")
    {
        ArgumentNullException.ThrowIfNull(body);
        ArgumentNullException.ThrowIfNull(known);
        for (var i = 0; i < body.Count; i++)
            if (body.GetAt(i).Key.StartsWith('$')) return []; // operators: an unknown field there is a 400 (UpdateEngine.EnsureFieldsKept)
        List<string>? warnings = null;
        for (var i = 0; i < body.Count; i++)
        {
            var field = body.GetAt(i).Key;
            if (known.Contains(field)) continue;
            var meant = Closest(field, known);
            (warnings ??= []).Add($"'{prefix}{field}' is not a field of {kind} and {fate}"
                + (meant is null ? $" (fields: {string.Join(", ", known.Select(k => prefix + k))})" : $"; did you mean '{prefix}{meant}'?"));
        }
        return warnings ?? (IReadOnlyList<string>)[];
    }

    /// <summary>
    /// A call refused as invalid (400) whose body also named fields the call does not have: the refusal, with those
    /// fields named as a success's warnings would name them. A misnamed field is the usual cause, and the refusal alone
    /// hid it: <c>input</c> for execute_policy's <c>input_data</c> was "input_data: is required", a job's
    /// <c>input_data</c> for its <c>inputs</c> "inputs.ip: is required". Null when there is nothing to add.
    /// </summary>
    public static PolicyGridException? Explained(PolicyGridException refusal, JsonObject body, IReadOnlySet<string> known, string kind)
    {
        ArgumentNullException.ThrowIfNull(refusal);
        if (refusal.Status != 400) return null;
        var ignored = Warnings(body, known, kind, fate: "was ignored");
        return ignored.Count == 0 ? null
            : new PolicyGridException(refusal.Status, refusal.Code, $"{refusal.Message}; {string.Join("; ", ignored)}", refusal.Errors, refusal)
                { RetryAfterSeconds = refusal.RetryAfterSeconds };
    }

    /// <summary>
    /// Runs a call whose body is <paramref name="body"/>; a 400 it ends with is thrown again with the body's unknown fields
    /// named (<see cref="Explained"/>). Every other outcome passes through unchanged.
    /// </summary>
    public static async Task<T> ExplainingRefusals<T>(JsonObject body, IReadOnlySet<string> known, string kind, Func<Task<T>> call)
    {
        ArgumentNullException.ThrowIfNull(call);
        try { return await call(); }
        catch (PolicyGridException e) when (Explained(e, body, known, kind) is { } explained) { throw explained; }
    }

    /// <summary>The known field a typo most likely meant (<see cref="FieldNames.Closest"/>); null when none is.</summary>
    public static string? Closest(string field, IEnumerable<string> known) => FieldNames.Closest(field, known);
}
