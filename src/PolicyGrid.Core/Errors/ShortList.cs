namespace PolicyGrid.Core.Errors;

/// <summary>
/// A list that may be long, as a message names it: its first few items, then how many more ("a, b and 7 more"), so that an
/// answer or a log line about thousands of items stays short.
/// </summary>
public static class ShortList
{
    public static string Of(IReadOnlyList<string> items, int shown)
    {
        ArgumentNullException.ThrowIfNull(items);
        return string.Join(", ", items.Take(shown)) + (items.Count > shown ? $" and {items.Count - shown} more" : "");
    }
}
