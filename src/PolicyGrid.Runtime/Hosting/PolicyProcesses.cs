using System.Collections.Concurrent;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// Processes other than this server's own workers that run policy code with pools of their own: local Type 3 job
/// processes (<c>policygrid job-run</c>), running or re-attached after a restart. The API's guard takes them and every
/// process under them for policy code, as it does a worker's.
/// </summary>
public sealed class PolicyProcesses
{
    private readonly ConcurrentDictionary<int, byte> pids = new();

    public void Add(int pid) => pids.TryAdd(pid, 0);

    public void Remove(int pid) => pids.TryRemove(pid, out _);

    /// <summary>The pids now registered.</summary>
    public IReadOnlySet<int> Pids => pids.Keys.ToHashSet();
}
