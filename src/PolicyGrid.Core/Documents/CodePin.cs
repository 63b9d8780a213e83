using System.Text.RegularExpressions;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Core.Documents;

/// <summary>
/// The sha256 a policy's <c>code</c> address fixes by itself: <c>bundle://sha256/&lt;hex&gt;</c>, a URL whose
/// path is <c>/bundles/sha256/&lt;hex&gt;</c> (this API's download route) or one with a <c>#sha256=&lt;hex&gt;</c>
/// fragment. Any other URL can serve different bytes tomorrow, which is why the registry records what it
/// loaded in <c>code_sha256</c>.
/// </summary>
public static partial class CodePin
{
    /// <summary>The pinned sha256 in lowercase hex, or null when the address pins nothing (or is not an address).</summary>
    public static string? Of(string code)
    {
        code = code.Trim();
        if (code.StartsWith(BundleRef.Scheme, StringComparison.OrdinalIgnoreCase))
        {
            var hex = code[BundleRef.Scheme.Length..].ToLowerInvariant();
            return IsSha256(hex) ? hex : null;
        }
        if (!Uri.TryCreate(code, UriKind.Absolute, out var uri)) return null;
        if (uri.Scheme is "http" or "https" && OfBundlePath(uri) is { } fromPath) return fromPath;
        if (uri.Fragment.StartsWith("#sha256=", StringComparison.OrdinalIgnoreCase))
        {
            var hex = uri.Fragment[8..].Trim().ToLowerInvariant();
            return IsSha256(hex) ? hex : null;
        }
        return null;
    }

    /// <summary>The sha256 (lowercase hex) a URL names by its path, <c>/bundles/sha256/&lt;hex&gt;</c>, or null.</summary>
    public static string? OfBundlePath(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        return BundlePath().Match(uri.AbsolutePath) is { Success: true } m ? m.Groups[1].Value.ToLowerInvariant() : null;
    }

    /// <summary>The code as messages show it: an http(s) URL without the credentials its user info or query may carry.</summary>
    public static string Shown(string code) =>
        Uri.TryCreate(code, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" ? Redacted(uri) : code;

    /// <summary>A URL as messages show it: scheme, host, port and path only.</summary>
    public static string Redacted(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        return $"{uri.Scheme}://{uri.Host}{(uri.IsDefaultPort ? "" : ":" + uri.Port)}{uri.AbsolutePath}";
    }

    /// <summary>64 lowercase hex digits.</summary>
    public static bool IsSha256(string value) => Sha256Hex().IsMatch(value);

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex Sha256Hex();

    [GeneratedRegex("/bundles/sha256/([0-9a-fA-F]{64})/?$")]
    private static partial Regex BundlePath();
}
