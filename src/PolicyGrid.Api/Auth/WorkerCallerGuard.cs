using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Api.Auth;

/// <summary>
/// On a server without API tokens, which trusts whoever reaches it on loopback, refuses calls whose connection a
/// policy worker opened: policy code is other people's code, and through the open API it read every policy's
/// parameters and could change or delete any policy. The peer socket comes from the kernel's socket table
/// (<c>/proc/net/tcp</c>, <c>tcp6</c>), once per connection. Its uid gives a worker away where workers run as uids of
/// their own (a root server's default). Where they share a uid with other processes (a non-root server's workers run
/// as its own uid, which curl has too; <see cref="WorkerPoolOptions.RunAsUser"/>), and only when the peer's uid is one
/// policy code runs as, the socket is looked for among the descriptors of the processes that run policy code, told by
/// descent and session (<see cref="PolicyProcessesIn"/>): under a worker or a local job process, in a worker's session,
/// or under the server (the subreaper of what policies orphan) but out of its session, as setsid leaves a policy's process.
/// With tokens the token check decides, as for any caller.
/// </summary>
public sealed class WorkerCallerGuard(RequestDelegate next, IOptionsMonitor<ApiAuthOptions> auth, IServiceProvider services)
{
    private static readonly object Key = new();

    // Resolved at the first call, not when the pipeline is built: the runtime's options are validated when the host
    // starts, where serve reports a bad setting in its own words. Null where no policy runtime is hosted.
    private readonly Lazy<WorkerPoolOptions?> pool = new(() => services.GetService<PolicyRuntimeOptions>()?.Pool);
    private readonly Lazy<PythonWorkerPool?> workers = new(() => services.GetService<PythonWorkerPool>());
    private readonly Lazy<PolicyProcesses?> policyProcesses = new(() => services.GetService<PolicyProcesses>());
    private readonly Lazy<int?> sharedWorkerUid = new(() => SharedWorkerUid(services.GetService<PolicyRuntimeOptions>()?.Pool));
    private readonly Lazy<bool> reapsOrphans = new(() => services.GetService<PolicyRuntimeOptions>()?.Pool.ReapOrphans ?? false);

    public Task InvokeAsync(HttpContext context)
    {
        if (auth.CurrentValue.Enabled || !OperatingSystem.IsLinux() || context.Connection.RemoteIpAddress is not { } remote || !IPAddress.IsLoopback(remote))
            return next(context);
        var items = context.Features.Get<IConnectionItemsFeature>()?.Items;
        string? worker;
        if (items is not null && items.TryGetValue(Key, out var known)) worker = (string?)known;
        else
        {
            worker = WorkerBehind(remote, context.Connection.RemotePort, context.Connection.LocalIpAddress, context.Connection.LocalPort);
            if (items is not null) items[Key] = worker;
        }
        if (worker is not null)
            return Failure.From(Problems.Forbidden(
                $"this server has no API tokens, so it takes no calls from policy code (the caller is {worker}): " +
                "configure API tokens (PolicyGrid:Auth:Tokens) and give the policy one in its settings")).ExecuteAsync(context);
        return next(context);
    }

    // Who of policy code opened the connection ("a policy worker, uid N", "a process of policy worker N", ...), or null for none.
    private string? WorkerBehind(IPAddress remote, int remotePort, IPAddress? local, int localPort)
    {
        if (PeerSocket(remote, remotePort, local, localPort) is not { } peer) return null;
        if (pool.Value?.IsWorkerUid(peer.Uid) == true) return $"a policy worker, uid {peer.Uid}";
        if (peer.Inode == 0) return null;
        var live = workers.Value?.LiveWorkers() ?? [];
        var jobs = policyProcesses.Value?.Pids ?? new HashSet<int>();
        // Only a uid policy code may run as is looked at: a live worker's, or the one workers share (where a worker
        // has gone, what its policy left behind, and a local job's workers, still run as it).
        if (!live.Any(w => w.Uid == peer.Uid) && sharedWorkerUid.Value != peer.Uid) return null;
        if (live.Count == 0 && jobs.Count == 0 && !reapsOrphans.Value) return null;
        return PolicyProcessHolding(peer.Inode, live.Select(w => w.Pid).ToHashSet(), jobs);
    }

    // The uid workers run as where they do not get uids of their own: a non-root server's own; under root, RunAsUser's
    // (the server's own when empty), looked up in /etc/passwd as the worker looks it up. Null where it cannot be told.
    private static int? SharedWorkerUid(WorkerPoolOptions? options)
    {
        int? own = null;
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
            if (line?.Split('\t', StringSplitOptions.RemoveEmptyEntries) is [_, _, var euid, ..] && int.TryParse(euid, NumberStyles.None, CultureInfo.InvariantCulture, out var e)) own = e;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        if (own != 0 || options is null) return own;
        if (string.IsNullOrEmpty(options.RunAsUser)) return 0;
        try
        {
            foreach (var entry in File.ReadLines("/etc/passwd"))
                if (entry.Split(':') is [var name, _, var uid, ..] && name == options.RunAsUser && int.TryParse(uid, NumberStyles.None, CultureInfo.InvariantCulture, out var u)) return u;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>The uid owning the socket at <paramref name="peer"/>:<paramref name="peerPort"/> connected to ours, or null when not found.</summary>
    public static int? PeerUid(IPAddress peer, int peerPort, IPAddress? local, int localPort) => PeerSocket(peer, peerPort, local, localPort)?.Uid;

    /// <summary>The uid and inode of the socket at <paramref name="peer"/>:<paramref name="peerPort"/> connected to ours, or null when not found.</summary>
    public static (int Uid, long Inode)? PeerSocket(IPAddress peer, int peerPort, IPAddress? local, int localPort)
    {
        foreach (var table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
        {
            IEnumerable<string> lines;
            try { lines = File.ReadLines(table).Skip(1).ToList(); }
            catch (IOException) { continue; }
            catch (UnauthorizedAccessException) { continue; }
            var wide = table.EndsWith('6');
            var peerText = Endpoint(peer, peerPort, wide);
            var localText = local is null ? null : Endpoint(local, localPort, wide);
            foreach (var line in lines)
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
                if (f.Length < 10 || !string.Equals(f[1], peerText, StringComparison.OrdinalIgnoreCase)) continue;
                if (localText is not null && !string.Equals(f[2], localText, StringComparison.OrdinalIgnoreCase)) continue;
                if (int.TryParse(f[7], NumberStyles.None, CultureInfo.InvariantCulture, out var uid))
                    return (uid, long.TryParse(f[9], NumberStyles.None, CultureInfo.InvariantCulture, out var inode) ? inode : 0);
            }
        }
        return null;
    }

    /// <summary>
    /// Who of the processes running policy code holds socket <paramref name="inode"/> (as the refusal names it), or null.
    /// The workers' own descriptors are read first (most connections are theirs), then those of the other processes
    /// <see cref="PolicyProcessesIn"/> finds in <c>/proc/&lt;pid&gt;/stat</c>; no other process's are read.
    /// </summary>
    public static string? PolicyProcessHolding(long inode, IReadOnlySet<int> workers, IReadOnlySet<int> jobs)
    {
        var target = $"socket:[{inode.ToString(CultureInfo.InvariantCulture)}]";
        foreach (var worker in workers)
            if (Holds(worker, target)) return $"a process of policy worker {worker}";
        var table = new Dictionary<int, ProcessEntry>();
        try
        {
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
                if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && EntryOf(dir) is { } entry)
                    table[pid] = entry;
        }
        catch (IOException) { return null; }
        foreach (var (pid, caller) in PolicyProcessesIn(table, Environment.ProcessId, workers, jobs))
            if (!workers.Contains(pid) && Holds(pid, target)) return caller;
        return null;
    }

    /// <summary>A process as <c>/proc/&lt;pid&gt;/stat</c> shows it: its parent, its session and when it started (clock ticks since boot).</summary>
    public readonly record struct ProcessEntry(int Parent, int Session, ulong StartTicks);

    /// <summary>
    /// The processes of <paramref name="table"/> that run policy code, each with how the refusal names it:
    /// <list type="bullet">
    /// <item>a worker and every process under it; every process under a registered job process (<paramref name="jobs"/>),
    /// which runs no policy code itself but a worker pool of its own;</item>
    /// <item>a process in a worker's session (every worker is a session leader);</item>
    /// <item>a process under <paramref name="server"/> (its subreaper, so a process a policy orphans is reparented to it)
    /// with a process on the way up to it that leads a session or is in a session other than the server's: a process
    /// the server starts for itself (pip, a <c>python -c</c> probe, xz, a job process) stays in the server's session,
    /// while everything under a worker is in the worker's session or one that a policy process made with setsid, and
    /// stays there when its worker dies. Where the server's session may have been made anew (its leader is gone, or
    /// a process holding the leader's pid started after the server: a policy process that got that pid and called
    /// setsid), every process under the server is taken for policy code.</item>
    /// </list>
    /// </summary>
    public static IEnumerable<KeyValuePair<int, string>> PolicyProcessesIn(IReadOnlyDictionary<int, ProcessEntry> table, int server, IReadOnlySet<int> workers, IReadOnlySet<int> jobs)
    {
        if (!table.TryGetValue(server, out var self)) yield break;
        var leader = self.Session;
        var genuine = leader == server || leader <= 1 || (table.TryGetValue(leader, out var l) && l.StartTicks <= self.StartTicks);
        // Per process: its own refusal (worker, worker's session, under either or under a job process), the one it
        // passes on to the processes under it (a job process's own is null: it runs no policy code itself), whether it
        // is under the server, and the first process on the way up that is out of the server's session.
        var known = new Dictionary<int, Lineage>();
        var chain = new List<int>();
        foreach (var start in table.Keys)
        {
            chain.Clear();
            var at = start;
            Lineage above;
            while (true)
            {
                if (known.TryGetValue(at, out above)) break;
                if (at == server) { above = new(null, null, true, null); break; }
                if (at <= 1 || !table.ContainsKey(at) || chain.Count > table.Count) { above = new(null, null, false, null); break; }
                chain.Add(at);
                at = table[at].Parent;
            }
            for (var i = chain.Count - 1; i >= 0; i--)
            {
                var pid = chain[i];
                var entry = table[pid];
                var own = workers.Contains(pid) ? $"a process of policy worker {pid}"
                    : workers.Contains(entry.Session) ? $"a process of policy worker {entry.Session}"
                    : above.Passed;
                var passed = own ?? (jobs.Contains(pid) ? $"a process of local job process {pid}" : null);
                var outside = !genuine || entry.Session != leader || entry.Session == pid ? pid : (int?)null;
                above = new(own, passed, above.UnderServer, above.Outside ?? outside);
                known[pid] = above;
            }
        }
        foreach (var (pid, lineage) in known)
        {
            if (lineage.Own is { } own) yield return new(pid, own);
            else if (lineage.UnderServer && lineage.Outside is { } top)
                yield return new(pid, $"process {pid}, started by policy code: process {top} above it left its worker's session");
        }
    }

    private readonly record struct Lineage(string? Own, string? Passed, bool UnderServer, int? Outside);

    private static ProcessEntry? EntryOf(string processDir)
    {
        try
        {
            var stat = File.ReadAllText(Path.Combine(processDir, "stat"));
            // After the command name (which may hold spaces and parentheses): state ppid pgrp session ... starttime (22nd field).
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return fields.Length > 19
                && int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var parent)
                && int.TryParse(fields[3], NumberStyles.None, CultureInfo.InvariantCulture, out var session)
                && ulong.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out var started)
                ? new ProcessEntry(parent, session, started) : null;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    private static bool Holds(int pid, string target)
    {
        try
        {
            foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/fd"))
                if (new FileInfo(fd).LinkTarget == target) return true;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return false;
    }

    // How the kernel prints an endpoint in /proc/net/tcp(6): each 32-bit word of the address as the machine holds it,
    // in hex, then ':' and the port in hex. An IPv4 peer of a dual-stack socket shows as ::ffff:a.b.c.d in .NET.
    private static string? Endpoint(IPAddress address, int port, bool wide)
    {
        if (!wide && address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (wide && address.AddressFamily == AddressFamily.InterNetwork) address = address.MapToIPv6();
        if ((address.AddressFamily == AddressFamily.InterNetworkV6) != wide) return null;
        var bytes = address.GetAddressBytes();
        var text = new System.Text.StringBuilder(bytes.Length * 2 + 5);
        for (var i = 0; i < bytes.Length; i += 4)
            text.Append(BitConverter.ToUInt32(bytes, i).ToString("X8", CultureInfo.InvariantCulture));
        return text.Append(':').Append(port.ToString("X4", CultureInfo.InvariantCulture)).ToString();
    }
}
