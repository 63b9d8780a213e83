using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Embedded.Functions;

/// <summary>A deployed function in this process: its spec, how to load it, and its live replicas.</summary>
internal sealed class HostedFunction(FunctionSpec spec, PolicyLoadSpec load)
{
    private readonly Lock _gate = new();
    private readonly List<FunctionReplica> _replicas = [];
    private long _calls;

    public FunctionSpec Spec { get; } = spec;
    public PolicyLoadSpec Load { get; } = load;
    public bool Removed { get; set; }

    /// <summary>Whether a call that waited in the worker pool may still start (its policy not retired meanwhile); made on first use.</summary>
    public Runtime.Hosting.StartCheck? PolicyCheck { get; set; }

    public long Calls => Interlocked.Read(ref _calls);

    public IReadOnlyList<FunctionReplica> Replicas
    {
        get { lock (_gate) return [.. _replicas]; }
    }

    public FunctionReplica AddReplica()
    {
        lock (_gate)
        {
            var replica = new FunctionReplica(Spec.Name, _replicas.Count);
            _replicas.Add(replica);
            return replica;
        }
    }

    /// <summary>
    /// Picks the least busy replica and counts the call against it before anyone else can pick. With autoscaling on
    /// and every replica at least <paramref name="scaleUpDepth"/> deep, a new replica is started first (up to max_replicas).
    /// </summary>
    public (FunctionReplica Replica, bool Added) Route(int scaleUpDepth)
    {
        lock (_gate)
        {
            Interlocked.Increment(ref _calls);
            var added = false;
            var least = _replicas.MinBy(r => r.Pending)!;
            if (Spec.Scale.Autoscale && least.Pending >= scaleUpDepth && _replicas.Count < Spec.Scale.MaxReplicas)
            {
                least = new FunctionReplica(Spec.Name, _replicas.Count);
                _replicas.Add(least);
                added = true;
            }
            least.Enter();
            return (least, added);
        }
    }

    /// <summary>Takes away the newest replica when autoscaling allows it and it has been idle long enough.</summary>
    public FunctionReplica? ShrinkIfIdle(long idleMilliseconds)
    {
        lock (_gate)
        {
            if (!Spec.Scale.Autoscale || _replicas.Count <= Spec.Scale.MinReplicas) return null;
            var last = _replicas[^1];
            if (last.Pending > 0 || last.IdleMilliseconds < idleMilliseconds) return null;
            _replicas.RemoveAt(_replicas.Count - 1);
            return last;
        }
    }

    public FunctionHostStatus Status()
    {
        var replicas = Replicas;
        var busy = replicas.Count(r => r.Pending > 0);
        return new FunctionHostStatus(Spec.Name, replicas.Count, busy, replicas.Sum(r => r.Pending) - busy, Calls, Spec.PolicyRuleUri, Load.Bundle.Sha256);
    }

    public JsonObject Parameters => Load.Parameters;

    /// <summary>One management action at a time per function, so the journal has one order every instance follows.</summary>
    public SemaphoreSlim ManagementGate { get; } = new(1, 1);

    private readonly List<JournalEntry> _journal = [];

    /// <summary>The sequence number of the last management action that succeeded on this function (0: none).</summary>
    public long JournalHead { get; private set; }

    /// <summary>
    /// The instance snapshot (context, state) right after the newest journal entry was applied by the instance that ran it
    /// first, when its class has get_state: an instance that cannot apply that entry restarts from it.
    /// </summary>
    public (long Seq, JsonObject Snapshot)? Seed { get; set; }

    /// <summary>How many entries the journal keeps (those instance #0's or another running instance's saved state may still lack).</summary>
    public int JournalCount
    {
        get { lock (_gate) return _journal.Count; }
    }

    /// <summary>The journal entry an instance that has applied up to <paramref name="applied"/> must apply next (null: none).</summary>
    public JournalEntry? NextEntry(long applied)
    {
        lock (_gate) return _journal.FirstOrDefault(e => e.Seq > applied);
    }

    public JournalEntry Append(string action, JsonObject data)
    {
        lock (_gate)
        {
            var entry = new JournalEntry(JournalHead + 1, action, (JsonObject)data.DeepClone());
            _journal.Add(entry);
            JournalHead = entry.Seq;
            return entry;
        }
    }

    /// <summary>
    /// Takes back <paramref name="entry"/>, the newest, when the store refused the journal holding it: the action is answered
    /// as failed, so no instance may apply it (taken only under <see cref="ManagementGate"/>, before any instance caught up).
    /// </summary>
    public void Retract(JournalEntry entry)
    {
        lock (_gate)
        {
            if (entry.Seq != JournalHead) return;
            _journal.Remove(entry);
            JournalHead = entry.Seq - 1;
        }
    }

    /// <summary>Drops the entries through <paramref name="through"/>: no instance needs them any more (see LocalFunctionHost.SaveJournalAsync).</summary>
    public void Compact(long through)
    {
        lock (_gate) _journal.RemoveAll(e => e.Seq <= through);
    }

    public JsonObject JournalJson()
    {
        lock (_gate)
            return new JsonObject
            {
                ["head"] = JournalHead,
                ["entries"] = new JsonArray([.. _journal.Select(e => (JsonNode)new JsonObject
                {
                    ["seq"] = e.Seq, ["action"] = e.Action, ["data"] = e.Data.DeepClone(),
                })]),
            };
    }

    public void LoadJournal(JsonObject? saved)
    {
        lock (_gate)
        {
            _journal.Clear();
            JournalHead = saved?["head"]?.GetValue<long>() ?? 0;
            if (saved?["entries"] is not JsonArray entries) return;
            foreach (var e in entries.OfType<JsonObject>())
                _journal.Add(new JournalEntry(e["seq"]!.GetValue<long>(), e["action"]!.GetValue<string>(),
                    e["data"] is JsonObject d ? (JsonObject)d.DeepClone() : []));
        }
    }
}

/// <summary>A management action that succeeded on the function: every instance applies it, in <see cref="Seq"/> order.</summary>
internal sealed record JournalEntry(long Seq, string Action, JsonObject Data);
