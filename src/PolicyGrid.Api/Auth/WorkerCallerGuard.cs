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
/// as its own uid, which curl has too; <see cref="WorkerPoolOptions.RunAsUser"/>), the socket is looked for among the
/// descriptors of the processes in a live worker's session (every worker is a session leader, and what a policy
/// starts stays in that session unless it calls setsid), and only when the peer's uid is one a live worker runs as.
/// With tokens the token check decides, as for any caller.
/// </summary>
public sealed class WorkerCallerGuard(RequestDelegate next, IOptionsMonitor<ApiAuthOptions> auth, IServiceProvider services)
{
    private static readonly object Key = new();

    // Resolved at the first call, not when the pipeline is built: the runtime's options are validated when the host
    // starts, where serve reports a bad setting in its own words. Null where no policy runtime is hosted.
    private readonly Lazy<WorkerPoolOptions?> pool = new(() => services.GetService<PolicyRuntimeOptions>()?.Pool);
    private readonly Lazy<PythonWorkerPool?> workers = new(() => services.GetService<PythonWorkerPool>());

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

    // Which worker opened the connection ("a policy worker, uid N" / "a process of policy worker N"), or null for none.
    private string? WorkerBehind(IPAddress remote, int remotePort, IPAddress? local, int localPort)
    {
        if (PeerSocket(remote, remotePort, local, localPort) is not { } peer) return null;
        if (pool.Value?.IsWorkerUid(peer.Uid) == true) return $"a policy worker, uid {peer.Uid}";
        if (peer.Inode == 0 || workers.Value is not { } live) return null;
        var sessions = live.LiveWorkers().Where(w => w.Uid == peer.Uid).Select(w => w.Pid).ToHashSet();
        return sessions.Count > 0 && SessionHolding(peer.Inode, sessions) is { } session ? $"a process of policy worker {session}" : null;
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
    /// The session (of <paramref name="sessions"/>) of a process holding socket <paramref name="inode"/>, or null. Only
    /// the descriptors of processes in those sessions are read: the session leaders first (most connections are the
    /// worker's own), then the rest, found by the session id in <c>/proc/&lt;pid&gt;/stat</c>.
    /// </summary>
    public static int? SessionHolding(long inode, IReadOnlySet<int> sessions)
    {
        var target = $"socket:[{inode.ToString(CultureInfo.InvariantCulture)}]";
        foreach (var leader in sessions)
            if (Holds(leader, target)) return leader;
        IEnumerable<string> processes;
        try { processes = Directory.EnumerateDirectories("/proc"); }
        catch (IOException) { return null; }
        foreach (var dir in processes)
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || sessions.Contains(pid)) continue;
            if (SessionOf(dir) is { } session && sessions.Contains(session) && Holds(pid, target)) return session;
        }
        return null;
    }

    // Field 6 of /proc/<pid>/stat, counted after the command name (which may hold spaces and parentheses).
    private static int? SessionOf(string processDir)
    {
        try
        {
            var stat = File.ReadAllText(Path.Combine(processDir, "stat"));
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return fields.Length > 3 && int.TryParse(fields[3], NumberStyles.None, CultureInfo.InvariantCulture, out var session) ? session : null;
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
