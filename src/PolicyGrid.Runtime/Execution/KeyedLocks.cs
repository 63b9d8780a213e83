namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// One async lock per key, in this process: holders of a key run one after another. Calls sharing a context key, so
/// the context a call saves is the one the next call loads; updates of one stored document (OptimisticUpdate).
/// Entries live only while someone holds or awaits them. (Processes sharing one store need the store's own
/// concurrency control as well: revisions for documents.)
/// </summary>
public sealed class KeyedLocks
{
    private readonly Dictionary<string, Entry> entries = new(StringComparer.Ordinal);

    public async Task<IDisposable> AcquireAsync(string key, CancellationToken ct)
    {
        Entry entry;
        lock (entries)
        {
            if (!entries.TryGetValue(key, out entry!)) entries[key] = entry = new Entry();
            entry.Users++;
        }
        try
        {
            await entry.Gate.WaitAsync(ct);
        }
        catch
        {
            Leave(key, entry);
            throw;
        }
        return new Holder(this, key, entry);
    }

    /// <summary>How many callers hold or await <paramref name="key"/> now (tests wait on it to know a call is queued).</summary>
    internal int Users(string key)
    {
        lock (entries) return entries.TryGetValue(key, out var entry) ? entry.Users : 0;
    }

    private void Leave(string key, Entry entry)
    {
        lock (entries)
        {
            if (--entry.Users == 0) entries.Remove(key);
        }
    }

    private sealed class Entry
    {
        public SemaphoreSlim Gate { get; } = new(1, 1);
        public int Users { get; set; }
    }

    private sealed class Holder(KeyedLocks owner, string key, Entry entry) : IDisposable
    {
        private int released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref released, 1) == 1) return;
            entry.Gate.Release();
            owner.Leave(key, entry);
        }
    }
}
