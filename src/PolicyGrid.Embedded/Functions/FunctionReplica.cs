using System.Text.Json.Nodes;

namespace PolicyGrid.Embedded.Functions;

/// <summary>
/// One instance of a function: its warm pool instance key, its turn (one call at a time, like an actor) and the
/// context and instance state it carries between calls. Both are persisted after every call under
/// <see cref="StoreKey"/>, so a restarted server resumes each replica where it stopped.
/// </summary>
internal sealed class FunctionReplica(string function, int index)
{
    private int _pending;
    private long _lastUsedTicks = Environment.TickCount64;

    public int Index { get; } = index;

    /// <summary>The worker pool's instance key: the same key always reaches the same live instance.</summary>
    public string InstanceKey { get; } = $"fn:{function}#{index}";

    /// <summary>Where context and instance state live in the context store.</summary>
    public string StoreKey { get; } = $"function:{function}#{index}";

    public SemaphoreSlim Turn { get; } = new(1, 1);

    /// <summary>Calls running or waiting for this replica's turn (the queue depth routing and autoscaling read).</summary>
    public int Pending => Volatile.Read(ref _pending);

    public long IdleMilliseconds => Pending > 0 ? 0 : Environment.TickCount64 - Volatile.Read(ref _lastUsedTicks);

    /// <summary>Loaded from the store before the first call of this process.</summary>
    public bool Loaded { get; set; }

    public JsonObject Context { get; set; } = [];

    /// <summary>What the instance's <c>get_state()</c> last answered; handed back to <c>set_state</c> when the instance is recreated.</summary>
    public JsonObject? State { get; set; }

    /// <summary>Whether the instance's class has get_state, as its last answer said (null before one in this process).</summary>
    public bool? KeepsState { get; set; }

    /// <summary>The last management journal entry this live instance has applied (see <see cref="HostedFunction.NextEntry"/>).</summary>
    public long AppliedSeq { get; set; }

    /// <summary>
    /// The serialized context and state last written to the store (null before the first write): equal ones are not
    /// written again unless the instance has applied journal entries since. Those changed nothing it keeps, but the
    /// journal keeps every entry after the journal_seq saved, so a seq left behind would keep them all (an action sent
    /// again, a status not declared read_only).
    /// </summary>
    public string? Persisted { get; set; }

    /// <summary>The journal_seq last written to the store with the snapshot: the journal keeps what follows it.</summary>
    public long PersistedSeq { get; set; }

    /// <summary>
    /// Whether the store holds a snapshot of this instance (it was restored from one, or has written one). One that never
    /// saved a snapshot does not hold the journal's trimming back, nor does one not running (autoscaling stopped it): when
    /// it starts and the journal lacks entries after its own, it starts from instance #0's.
    /// </summary>
    public bool Saved { get; set; }

    // Serialized in place: cloning both into a new object only to write it out cost two deep copies on every call.
    public string SnapshotText() => $"{{\"context\":{Context.ToJsonString()},\"state\":{State?.ToJsonString() ?? "null"}}}";

    /// <summary>The last journal entry a snapshot written now records: none without get_state() state (it starts from the deployment).</summary>
    public long SnapshotSeq => State is not null ? AppliedSeq : 0;

    /// <summary>What the store keeps for this replica: a detached copy of its context and instance state.</summary>
    public JsonObject Snapshot() => new()
    {
        ["context"] = Context.DeepClone(),
        ["state"] = State?.DeepClone(),
        // What the saved snapshot includes of the journal: all applied, when there is get_state() state to restore; otherwise nothing,
        // since an instance recreated from this snapshot starts from the deployment and must replay every entry.
        ["journal_seq"] = SnapshotSeq,
    };

    public void Enter() => Interlocked.Increment(ref _pending);

    public void Leave()
    {
        Volatile.Write(ref _lastUsedTicks, Environment.TickCount64);
        Interlocked.Decrement(ref _pending);
    }
}
