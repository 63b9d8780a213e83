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
