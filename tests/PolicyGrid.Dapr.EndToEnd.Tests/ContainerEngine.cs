using System.Net.Sockets;

namespace PolicyGrid.Dapr.EndToEnd.Tests;

/// <summary>
/// Whether a container engine answers here. The docker CLI alone proves nothing (these machines
/// have one without a daemon), so this asks the engine itself: <c>GET /_ping</c> on DOCKER_HOST or
/// the default socket. The reason is what a skipped test reports.
/// </summary>
public static class ContainerEngine
{
    private static readonly Lazy<(bool Available, string Reason)> Probe = new(ProbeEngine);

    public static bool Available => Probe.Value.Available;
    public static string Reason => Probe.Value.Reason;

    private static (bool, string) ProbeEngine()
    {
        var host = Environment.GetEnvironmentVariable("DOCKER_HOST");
        if (string.IsNullOrEmpty(host)) host = "unix:///var/run/docker.sock";
        try
        {
            using var handler = new SocketsHttpHandler();
            Uri baseAddress;
            if (host.StartsWith("unix://", StringComparison.Ordinal))
            {
                var path = host["unix://".Length..];
                if (!File.Exists(path)) return (false, $"no container engine: socket {path} does not exist (DOCKER_HOST unset); the Dapr end-to-end suite needs Docker or Podman");
                handler.ConnectCallback = async (_, ct) =>
                {
                    var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
                    return new NetworkStream(socket, ownsSocket: true);
                };
                baseAddress = new Uri("http://engine");
            }
            else
            {
                baseAddress = new Uri(host.Replace("tcp://", "http://", StringComparison.Ordinal));
            }
            using var client = new HttpClient(handler) { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(5) };
            using var response = client.GetAsync("/_ping").GetAwaiter().GetResult();
            return response.IsSuccessStatusCode
                ? (true, "")
                : (false, $"no container engine: {host} answered /_ping with {(int)response.StatusCode}");
        }
        catch (Exception e) when (e is HttpRequestException or SocketException or TaskCanceledException or IOException)
        {
            return (false, $"no container engine: {host} does not answer ({e.Message}); the Dapr end-to-end suite needs Docker or Podman");
        }
    }
}
