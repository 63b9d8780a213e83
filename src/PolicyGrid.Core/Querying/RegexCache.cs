using System.Collections.Concurrent;
using System.Text.RegularExpressions;

namespace PolicyGrid.Core.Querying;

/// <summary>
/// Compiled regular expressions by pattern and options. Patterns come from callers (query filters, template
/// specs), so the cache is bounded: when it is full it starts over, and a stream of distinct patterns costs
/// compilations, never memory.
/// </summary>
public sealed class RegexCache(int capacity, TimeSpan matchTimeout)
{
    private readonly ConcurrentDictionary<(string Pattern, RegexOptions Options), Regex> compiled = new();

    /// <summary>How many patterns are cached now (at most the capacity).</summary>
    public int Count => compiled.Count;

    /// <summary>
    /// Whether <paramref name="regex"/> matches, or null when it ran past its match timeout twice in a row. The timeout is
    /// wall-clock time: on a busy host a thread can be off its CPU for longer than that in the middle of a match that
    /// takes microseconds (seen at load 15 on 2 CPUs: "10.0.0.1" refused), so a timeout gets a second try; a pattern
    /// that really backtracks without end runs out of time again. <paramref name="beforeRetry"/> runs between the
    /// two (a query checks its time budget there).
    /// </summary>
    public static bool? IsMatchWithin(Regex regex, ReadOnlySpan<char> value, Action? beforeRetry = null)
    {
        ArgumentNullException.ThrowIfNull(regex);
        try { return regex.IsMatch(value); }
        catch (RegexMatchTimeoutException) { beforeRetry?.Invoke(); }
        try { return regex.IsMatch(value); }
        catch (RegexMatchTimeoutException) { return null; }
    }

    /// <summary>The compiled pattern; throws <see cref="ArgumentException"/> for one that does not parse.</summary>
    public Regex Get(string pattern, RegexOptions options)
    {
        var key = (pattern, options);
        if (compiled.TryGetValue(key, out var regex)) return regex;
        regex = new Regex(pattern, options, matchTimeout);
        if (compiled.Count >= capacity) compiled.Clear();
        compiled.TryAdd(key, regex);
        return regex;
    }
}
