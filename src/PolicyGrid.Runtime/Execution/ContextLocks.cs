namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// One async lock per context key: calls sharing a key run one after another, so the context a
/// call saves is the one the next call loads. Entries live only while someone holds or awaits them.
/// (In-process: servers sharing one context store across processes need the store's own locking.)
/// </summary>
public sealed class ContextLocks
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

    private sealed class Holder(ContextLocks owner, string key, Entry entry) : IDisposable
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
