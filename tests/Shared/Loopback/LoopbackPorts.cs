using System.Net;
using System.Net.Sockets;

namespace PolicyGrid.TestSupport;

/// <summary>Loopback ports for tests' own servers, and for addresses where nothing listens.</summary>
public static class LoopbackPorts
{
    private static readonly HashSet<int> HandedOut = [];

    /// <summary>
    /// A loopback port the system just handed out as free (a random one may be an outgoing connection's), never the
    /// same one twice in this process: HttpListeners in one process share a port's endpoint, so two tests given the
    /// same port would trip each other. Nothing listens on it until the caller starts something there.
    /// </summary>
    public static int Free()
    {
        while (true)
        {
            using var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            var port = ((IPEndPoint)probe.LocalEndpoint).Port;
            lock (HandedOut)
            {
                if (HandedOut.Add(port)) return port;
            }
        }
    }
}
