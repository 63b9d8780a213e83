using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using PolicyGrid.Core.Hosting;

namespace PolicyGrid.Dapr;

public static class DaprAppPort
{
    public const string BindAddressKey = DaprOptions.Section + ":" + nameof(DaprOptions.BindAddress);
    public const string InsecureKey = DaprOptions.Section + ":" + nameof(DaprOptions.Insecure);

    /// <summary>The registry's API tokens (PolicyGrid.Api's <c>ApiAuthOptions.Section</c> + <c>:Tokens</c>, which this project does not reference).</summary>
    public const string ApiTokensKey = "PolicyGrid:Auth:Tokens";

    /// <summary>
    /// Listens where the sidecar expects the app: APP_PORT when set (the Dapr CLI sets it from
    /// <c>appPort</c>; the Kubernetes manifests set it too), else the app's port in <see cref="DaprNames.Ports"/>,
    /// on <see cref="DaprOptions.BindAddress"/> (loopback unless configured). Throws
    /// <see cref="DaprAppRefusedException"/> for an address that is not one, and for a non-loopback address
    /// without the credentials that app needs (<see cref="CheckExposure"/>).
    /// </summary>
    public static IWebHostBuilder UseDaprAppPort(this IWebHostBuilder builder, IConfiguration configuration, string appId)
    {
        var port = configuration["APP_PORT"] is { Length: > 0 } text && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is > 0 and < 65536
            ? p
            : DaprNames.Ports.For(appId);
        var address = BindAddress(configuration);
        CheckExposure(appId, address, configuration);
        CheckKestrelEndpoints(appId, configuration);
        return builder.UseUrls($"http://{address.UrlHost}:{port.ToString(CultureInfo.InvariantCulture)}");
    }

    /// <summary>Kestrel's own endpoints in configuration (<c>Kestrel:Endpoints:{name}:Url</c>).</summary>
    public const string KestrelEndpointsKey = "Kestrel:Endpoints";

    // Endpoints configured for Kestrel replace the URL UseUrls sets (Kestrel logs that it overrides it), so each is held
    // to the same rule as the bind address: without this, one line of configuration opened the app to the network.
    private static void CheckKestrelEndpoints(string appId, IConfiguration configuration)
    {
        foreach (var endpoint in configuration.GetSection(KestrelEndpointsKey).GetChildren())
        {
            if (endpoint["Url"] is not { Length: > 0 } url) continue;
            CheckExposure(appId, new DaprBindAddress(url, url, ListenUrl.IsLoopback(url)), configuration, $"{KestrelEndpointsKey}:{endpoint.Key}:Url");
        }
    }

    /// <summary>The configured bind address, or the loopback default; anything but an IP address or <c>localhost</c> is refused.</summary>
    public static DaprBindAddress BindAddress(IConfiguration configuration)
    {
        var text = configuration[BindAddressKey];
        if (string.IsNullOrEmpty(text)) text = DaprOptions.DefaultBindAddress;
        if (text.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return new DaprBindAddress(text, "localhost", IsLoopback: true);
        // Brackets are how a URL writes an IPv6 address; accept them around one, and add them back for the URL.
        var bracketed = text.Length > 2 && text[0] == '[' && text[^1] == ']';
        var bare = bracketed ? text[1..^1] : text;
        if (IPAddress.TryParse(bare, out var ip) && WrittenAsAddress(bare, ip) && (!bracketed || ip.AddressFamily == AddressFamily.InterNetworkV6))
        {
            var host = ip.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{ip}]" : ip.ToString();
            return new DaprBindAddress(text, host, IPAddress.IsLoopback(ip));
        }
        throw new DaprAppRefusedException(
            $"{BindAddressKey} is '{text}', which is not an address to listen on: use an IP address (127.0.0.1, the default, ::1, " +
            "0.0.0.0 or :: for every interface, or one interface's address) or localhost.");
    }

    // IPAddress.TryParse also takes "1" (0.0.0.1), "127.1" and "[::1]:80"; a bind address is written out in full.
    private static bool WrittenAsAddress(string text, IPAddress ip) =>
        ip.AddressFamily == AddressFamily.InterNetworkV6
            ? !text.Contains('[', StringComparison.Ordinal) && !text.Contains(']', StringComparison.Ordinal)
            : ip.ToString() == text;

    /// <summary>
    /// DESIGN.md "Security defaults" for the Dapr apps: on loopback only the sidecar (and the pod) can call the app;
    /// on any other address the app needs credentials of its own, unless <see cref="DaprOptions.Insecure"/> says
    /// an open app is meant. The registry is the public API, called directly with bearer tokens, so it needs
    /// API tokens; the functions and graphs apps are called only by their sidecar, so they need the app API token
    /// (APP_API_TOKEN, which daprd sends as <c>dapr-api-token</c> and <see cref="DaprAppToken"/> checks). The
    /// executor serves the whole PolicyGrid API too, behind the same API token check: either protects it (a node
    /// installed by create-infra is called directly by the registry with its node token, not through its sidecar).
    /// </summary>
    public static void CheckExposure(string appId, DaprBindAddress address, IConfiguration configuration, string setting = BindAddressKey)
    {
        if (address.IsLoopback || configuration.GetValue<bool>(InsecureKey)) return;
        if (appId == DaprNames.Apps.Registry)
        {
            if (configuration.GetSection(ApiTokensKey).GetChildren().Any()) return;
            throw new DaprAppRefusedException(
                $"{appId} refuses to listen on {address.Text} ({setting}) without API tokens: whatever reaches that address " +
                $"could use the whole public API, pushing policies (whose code runs here) included. Configure API tokens ({ApiTokensKey}, " +
                $"see docs/api.md), listen on loopback (127.0.0.1, the default; the sidecar reaches its app there), or set {InsecureKey}=true " +
                "to run an open API on purpose.");
        }
        if (!string.IsNullOrEmpty(configuration[DaprAppToken.ConfigurationKey])) return;
        if (appId == DaprNames.Apps.Executor)
        {
            if (configuration.GetSection(ApiTokensKey).GetChildren().Any()) return;
            throw new DaprAppRefusedException(
                $"{appId} refuses to listen on {address.Text} ({setting}) without an app API token or API tokens: whatever " +
                $"reaches that address could use the whole API it serves, registering policies (whose code runs here) included. Set " +
                $"{DaprAppToken.ConfigurationKey} when only its Dapr sidecar calls it (and the same value for its daprd; on Kubernetes: the " +
                $"secret named by the annotation dapr.io/app-token-secret; see docs/dapr.md), API tokens ({ApiTokensKey}, see docs/api.md) " +
                $"when callers reach it directly, listen on loopback (127.0.0.1, the default), or set {InsecureKey}=true to take " +
                "unauthenticated calls on purpose.");
        }
        throw new DaprAppRefusedException(
            $"{appId} refuses to listen on {address.Text} ({setting}) without an app API token: it takes calls only from its " +
            $"Dapr sidecar, and whatever reaches that address could call it instead. Set {DaprAppToken.ConfigurationKey} for the app and the " +
            $"same value for its daprd (on Kubernetes: the secret named by the annotation dapr.io/app-token-secret; see docs/dapr.md), " +
            $"listen on loopback (127.0.0.1, the default), or set {InsecureKey}=true to take unauthenticated calls on purpose.");
    }
}

/// <summary>
/// Where a Dapr app listens: <paramref name="Text"/> as configured, <paramref name="UrlHost"/> as a URL writes it
/// (IPv6 in brackets), and whether only this machine (or pod) can reach it.
/// </summary>
public sealed record DaprBindAddress(string Text, string UrlHost, bool IsLoopback);

/// <summary>A Dapr app will not start as configured; the message says why and what to configure.</summary>
public sealed class DaprAppRefusedException(string message) : Exception(message);
