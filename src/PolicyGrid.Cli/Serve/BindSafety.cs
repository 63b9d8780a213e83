using System.Net;

namespace PolicyGrid.Cli.Serve;

/// <summary>
/// The rule of DESIGN.md "Security defaults": an open (token-less) API is only allowed on loopback.
/// Binding anywhere else needs tokens or an explicit --insecure.
/// </summary>
public static class BindSafety
{
    public static void Check(IEnumerable<string> urls, bool tokensConfigured, bool insecure)
    {
        if (tokensConfigured || insecure) return;
        var exposed = urls.Where(u => !IsLoopback(u)).ToList();
        if (exposed.Count == 0) return;
        throw new ServeRefusedException(
            $"refusing to serve without API tokens on a non-loopback address ({string.Join(", ", exposed)}). " +
            "Configure tokens (PolicyGrid:Auth:Tokens, see docs/api.md) or pass --insecure to run an open API on purpose.");
    }

    public static bool IsLoopback(string url)
    {
        var host = HostOf(url);
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return true;
        return IPAddress.TryParse(host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip);
    }

    // Kestrel accepts wildcards ("*", "+") that Uri does not parse; anything we cannot read is treated as exposed.
    private static string HostOf(string url)
    {
        var schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
        var rest = schemeEnd >= 0 ? url[(schemeEnd + 3)..] : url;
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        if (slash >= 0) rest = rest[..slash];
        if (rest.StartsWith('['))
        {
            var close = rest.IndexOf(']', StringComparison.Ordinal);
            return close > 0 ? rest[..(close + 1)] : rest;
        }
        var colon = rest.LastIndexOf(':');
        return colon >= 0 ? rest[..colon] : rest;
    }
}
