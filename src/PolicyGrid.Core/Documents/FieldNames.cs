namespace PolicyGrid.Core.Documents;

/// <summary>Which known name a misspelt one most likely meant: for the warnings that name a field a body or template got wrong.</summary>
public static class FieldNames
{
    /// <summary>
    /// The known field a typo most likely meant: the same letters in another case or with other separators, or at most
    /// two edits away (one for names of five letters or fewer, where two would match unrelated words); null when none is.
    /// </summary>
    public static string? Closest(string field, IEnumerable<string> known)
    {
        ArgumentNullException.ThrowIfNull(field);
        ArgumentNullException.ThrowIfNull(known);
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
