using System.Net;
using System.Net.Sockets;

namespace PolicyGrid.Runtime.Bundles;

/// <summary>Thrown (inside the connection attempt) when a bundle URL leads somewhere the operator has not allowed.</summary>
public sealed class BundleUrlRefusedException(string message) : Exception(message);

/// <summary>
/// Bundle URLs come from any writer, so a fetch must not become a way to reach this host or the private
/// network behind it. The guard resolves the host itself, refuses when any address is loopback, private,
/// link-local or otherwise non-public (unless the operator allows it), and connects to the address it
/// checked, so DNS cannot answer differently between check and use. It runs for every connection the
/// HTTP client opens, which includes each redirect target.
/// </summary>
public sealed class BundleNetworkGuard(BundleCacheOptions options)
{
    public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(context);
        var host = context.DnsEndPoint.Host;
        var addresses = IPAddress.TryParse(host.Trim('[', ']'), out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, ct);
        if (addresses.Length == 0) throw new BundleUrlRefusedException($"bundle URL host '{host}' does not resolve");
        foreach (var address in addresses)
            if (Refusal(address) is { } why)
                throw new BundleUrlRefusedException(
                    $"bundle URL host '{host}' resolves to {address}, a {why} address, which bundle fetches may not reach " +
                    $"(an operator can allow it with PolicyGrid:Runtime:Bundles:{(why == "loopback" ? "AllowLoopback" : "AllowPrivateNetworks")})");

        Exception? last = null;
        foreach (var address in addresses)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(new IPEndPoint(address, context.DnsEndPoint.Port), ct);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                last = e;
            }
        }
        throw last!;
    }

    /// <summary>Why an address is refused ("loopback", "private", ...), or null when it may be reached.</summary>
    public string? Refusal(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (IPAddress.IsLoopback(address)) return options.AllowLoopback ? null : "loopback";
        var kind = NonPublicKind(address);
        return kind is null || options.AllowPrivateNetworks ? null : kind;
    }

    private static string? NonPublicKind(IPAddress a)
    {
        if (a.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = a.GetAddressBytes();
            return b switch
            {
                [0, ..] => "unspecified",
                [127, ..] => "loopback",
                [10, ..] => "private",
                [100, >= 64 and <= 127, ..] => "shared (carrier-grade NAT)",
                [169, 254, ..] => "link-local",
                [172, >= 16 and <= 31, ..] => "private",
                [192, 0, 0, _] => "reserved",
                [192, 168, ..] => "private",
                [198, 18 or 19, ..] => "benchmarking",
                [>= 224, ..] => "multicast or reserved",
                _ => null,
            };
        }
        if (a.AddressFamily == AddressFamily.InterNetworkV6)
        {
            if (a.Equals(IPAddress.IPv6Any)) return "unspecified";
            if (a.IsIPv6LinkLocal) return "link-local";
            if (a.IsIPv6SiteLocal) return "site-local";
            if (a.IsIPv6Multicast) return "multicast";
            var b = a.GetAddressBytes();
            if ((b[0] & 0xFE) == 0xFC) return "private (unique local)";
            if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B) return "NAT64"; // 64:ff9b::/96 and 64:ff9b:1::/48
            if (a.IsIPv4MappedToIPv6) return NonPublicKind(a.MapToIPv4());
            // ::/96 (IPv4-compatible, deprecated) and ::ffff:0:0/96 (IPv4-translated) carry an IPv4 address that a
            // host with a tunnel or translator configured would reach: no public server is addressed so.
            if (b.AsSpan(0, 8).IndexOfAnyExcept((byte)0) < 0 && (BitConverter.ToUInt32(b, 8) == 0 || (b[8] == 0xFF && b[9] == 0xFF && b[10] == 0 && b[11] == 0)))
                return "reserved (IPv4-compatible or IPv4-translated)";
            // 6to4 (2002::/16) routes to the IPv4 address in its next 32 bits: refused when that one would be.
            if (b[0] == 0x20 && b[1] == 0x02 && NonPublicKind(new IPAddress(b.AsSpan(2, 4))) is { } embedded)
                return $"6to4 of a {embedded}";
            return null;
        }
        return "non-IP";
    }
}
