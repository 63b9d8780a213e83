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
    // Context keys come from callers (context_key), so nothing here may grow with the number of keys ever used.
    // What is remembered is bounded in entries and in characters (past either, everything is forgotten). Writes
    // are counted per slot of a fixed table, not per key: keys that share a slot only invalidate each other's
    // reads now and then, and the counts only ever grow, so a read is never taken for current after a write.
    private const int MaxEntries = 50_000;
    internal const long MaxCachedChars = 32L << 20;
    private const int VersionSlots = 1 << 16;

    private readonly long[] versions = new long[VersionSlots];
    private readonly ConcurrentDictionary<string, Entry> entries = new(StringComparer.Ordinal);
    private long epoch;
    private long cachedChars;

    /// <summary>Keys remembered now, and the characters of the bodies kept (an overestimate).</summary>
    internal (int Entries, long Chars) Size => (entries.Count, Interlocked.Read(ref cachedChars));

    private ref long VersionOf(string key) => ref versions[StringComparer.Ordinal.GetHashCode(key) & (VersionSlots - 1)];

    /// <param name="Body">The stored JSON, or null when the key had no (live) context.</param>
    private sealed record Entry(string? Body, long? ExpiresAt, long Version, long Epoch);

    /// <summary>Taken before reading the database: the stamp the read is valid under.</summary>
    public (long Version, long Epoch) Stamp(string key) => (Volatile.Read(ref VersionOf(key)), Volatile.Read(ref epoch));

    public bool TryGet(string key, long now, out string? body)
    {
        body = null;
        if (!entries.TryGetValue(key, out var entry) || entry.Epoch != Volatile.Read(ref epoch) || entry.Version != Volatile.Read(ref VersionOf(key))) return false;
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
    public void Changed(string key) => Interlocked.Increment(ref VersionOf(key));

    // A new epoch first, so an entry stamped before the clear can never match again.
    private void Forget()
    {
        Interlocked.Increment(ref epoch);
        entries.Clear();
        Interlocked.Exchange(ref cachedChars, 0);
    }
}
