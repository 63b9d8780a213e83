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
        return new FunctionHostStatus(Spec.Name, replicas.Count, busy, replicas.Sum(r => r.Pending) - busy, Calls);
    }

    public JsonObject Parameters => Load.Parameters;
}
