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
/// parameters and could change or delete any policy. The peer's uid comes from the kernel's socket table
/// (<c>/proc/net/tcp</c>, <c>tcp6</c>), once per connection; it tells workers apart only where they run as uids of
/// their own (a root server's default). With tokens the token check decides, as for any caller.
/// </summary>
public sealed class WorkerCallerGuard(RequestDelegate next, IOptionsMonitor<ApiAuthOptions> auth, IServiceProvider services)
{
    private static readonly object Key = new();

    // Resolved at the first call, not when the pipeline is built: the runtime's options are validated when the host
    // starts, where serve reports a bad setting in its own words. Null where no policy runtime is hosted.
    private readonly Lazy<WorkerPoolOptions?> pool = new(() => services.GetService<PolicyRuntimeOptions>()?.Pool);

    public Task InvokeAsync(HttpContext context)
    {
        if (auth.CurrentValue.Enabled || !OperatingSystem.IsLinux() || context.Connection.RemoteIpAddress is not { } remote || !IPAddress.IsLoopback(remote))
            return next(context);
        var items = context.Features.Get<IConnectionItemsFeature>()?.Items;
        int? uid;
        if (items is not null && items.TryGetValue(Key, out var known)) uid = (int?)known;
        else
        {
            uid = PeerUid(remote, context.Connection.RemotePort, context.Connection.LocalIpAddress, context.Connection.LocalPort);
            if (items is not null) items[Key] = uid;
        }
        if (uid is { } u && pool.Value?.IsWorkerUid(u) == true)
            return Failure.From(Problems.Forbidden(
                $"this server has no API tokens, so it takes no calls from policy code (the caller is a policy worker, uid {u}): " +
                "configure API tokens (PolicyGrid:Auth:Tokens) and give the policy one in its settings")).ExecuteAsync(context);
        return next(context);
    }

    /// <summary>The uid owning the socket at <paramref name="peer"/>:<paramref name="peerPort"/> connected to ours, or null when not found.</summary>
    public static int? PeerUid(IPAddress peer, int peerPort, IPAddress? local, int localPort)
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
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
                if (f.Length < 8 || !string.Equals(f[1], peerText, StringComparison.OrdinalIgnoreCase)) continue;
                if (localText is not null && !string.Equals(f[2], localText, StringComparison.OrdinalIgnoreCase)) continue;
                if (int.TryParse(f[7], NumberStyles.None, CultureInfo.InvariantCulture, out var uid)) return uid;
            }
        }
        return null;
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
