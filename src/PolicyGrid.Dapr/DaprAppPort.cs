using System.Globalization;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;

namespace PolicyGrid.Dapr;

public static class DaprAppPort
{
    /// <summary>
    /// Listens where the sidecar expects the app: APP_PORT when set (the Dapr CLI sets it from
    /// <c>appPort</c>; the Kubernetes manifests set it too), else the app's port in <see cref="DaprNames.Ports"/>.
    /// Binds all interfaces, because the sidecar reaches the app from its own container or pod network.
    /// </summary>
    public static IWebHostBuilder UseDaprAppPort(this IWebHostBuilder builder, IConfiguration configuration, string appId)
    {
        var port = configuration["APP_PORT"] is { Length: > 0 } text && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is > 0 and < 65536
            ? p
            : DaprNames.Ports.For(appId);
        return builder.UseUrls($"http://0.0.0.0:{port.ToString(CultureInfo.InvariantCulture)}");
    }
}
