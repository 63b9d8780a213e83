using System.Text.Json.Nodes;

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
    /// The known field a typo most likely meant: the same letters in another case or with other separators, or at most
    /// two edits away (one for names of five letters or fewer, where two would match unrelated words); null when none is.
    /// </summary>
    public static string? Closest(string field, IEnumerable<string> known)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        var folded = Fold(field);
        foreach (var candidate in known)
        {
            if (Fold(candidate) == folded) return candidate;
            var distance = Distance(field.ToLowerInvariant(), candidate.ToLowerInvariant());
            if (distance < bestDistance) (best, bestDistance) = (candidate, distance);
        }
        return bestDistance <= (field.Length <= 5 ? 1 : 2) ? best : null;
    }

    private static string Fold(string name) =>
        new([.. name.Where(c => c is not ('_' or '-' or ' ' or '.')).Select(char.ToLowerInvariant)]);

    // Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours.
    private static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (var j = 0; j <= b.Length; j++) d[0, j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        }
        return d[a.Length, b.Length];
    }
}
