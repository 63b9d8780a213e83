using System.Net;

namespace PolicyGrid.Core.Hosting;

/// <summary>Where a server URL (as <c>--urls</c> or <c>Kestrel:Endpoints</c> write it) makes Kestrel listen.</summary>
public static class ListenUrl
{
    /// <summary>
    /// Whether the URL binds loopback only: its host is localhost or a loopback address. Kestrel binds any other host
    /// (*, +, 0.0.0.0, a name) to every interface, and a URL that cannot be read counts as open too.
    /// </summary>
    public static bool IsLoopback(string url)
    {
        var host = HostOf(url);
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return true;
        return IPAddress.TryParse(host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip);
    }

    // Kestrel accepts wildcards ("*", "+") that Uri does not parse.
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
