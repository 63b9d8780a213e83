using System.Collections.Concurrent;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// What <see cref="SqliteContextStore"/> last read for each key, reused while no write to that key
/// has committed since. Most policies only read their context, and a warm call otherwise paid a
/// database round trip for it on every call. One cache per database file in a process (kept by
/// <see cref="SqliteDatabase"/>), so every store object on the file sees every write made through any of them. Writes by other processes
/// are not seen: the only other processes on a data directory are local job runners, which keep
/// their context in a file of their own.
/// </summary>
internal sealed class ContextReadCache
{
    // Bounds on what is remembered: context keys come from callers (context_key), so neither the number of keys
    // ever written nor the size of the bodies kept may grow without end. Past either, everything is forgotten.
    private const int MaxEntries = 50_000;
    private const int MaxVersions = 200_000;
    internal const long MaxCachedChars = 32L << 20;

    private readonly ConcurrentDictionary<string, long> versions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Entry> entries = new(StringComparer.Ordinal);
    private long epoch;
    private long cachedChars;

    /// <summary>Keys remembered now, keys with a write counted, and the characters of the bodies kept (an overestimate).</summary>
    internal (int Entries, int Versions, long Chars) Size => (entries.Count, versions.Count, Interlocked.Read(ref cachedChars));

    /// <param name="Body">The stored JSON, or null when the key had no (live) context.</param>
    private sealed record Entry(string? Body, long? ExpiresAt, long Version, long Epoch);

    /// <summary>Taken before reading the database: the stamp the read is valid under.</summary>
    public (long Version, long Epoch) Stamp(string key) => (versions.GetValueOrDefault(key), Volatile.Read(ref epoch));

    public bool TryGet(string key, long now, out string? body)
    {
        body = null;
        if (!entries.TryGetValue(key, out var entry) || entry.Epoch != Volatile.Read(ref epoch) || entry.Version != versions.GetValueOrDefault(key)) return false;
        if (entry.ExpiresAt is { } expires && expires <= now) return false;
        body = entry.Body;
        return true;
    }

    public void Remember(string key, (long Version, long Epoch) stamp, string? body, long? expiresAt)
    {
        var chars = body?.Length ?? 0;
        if (chars > MaxCachedChars / 16) return; // one body may not take a sixteenth of the budget
        if (entries.Count >= MaxEntries || Interlocked.Add(ref cachedChars, chars) > MaxCachedChars)
        {
            Forget();
            Interlocked.Add(ref cachedChars, chars);
        }
        entries[key] = new Entry(body, expiresAt, stamp.Version, stamp.Epoch);
    }

    /// <summary>After a write to <paramref name="key"/> has committed: what was read before it is stale.</summary>
    public void Changed(string key)
    {
        if (versions.Count >= MaxVersions && !versions.ContainsKey(key)) Forget();
        versions.AddOrUpdate(key, 1, static (_, v) => v + 1);
    }

    // A new epoch first, so an entry stamped before the clear can never match again: that also makes it safe to
    // start every key's write count again (a read stamped before is of the old epoch).
    private void Forget()
    {
        Interlocked.Increment(ref epoch);
        entries.Clear();
        versions.Clear();
        Interlocked.Exchange(ref cachedChars, 0);
    }
}
