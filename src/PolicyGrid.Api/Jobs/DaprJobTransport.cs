using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Jobs;

/// <summary>
/// <c>dapr://app-id</c> executors: the same node routes as <c>http(s)://</c> nodes, reached through the
/// local Dapr sidecar's service invocation (<c>/v1.0/invoke/{app-id}/method/...</c>), so calls get
/// Dapr's mTLS, retries and resiliency policies.
/// </summary>
public sealed class DaprJobTransport(IHttpClientFactory clients, IConfiguration configuration, ILoggerFactory loggers) : IJobTransport
{
    public bool CanHandle(Uri executorHostUri) => executorHostUri.Scheme == "dapr";

    public IJobLauncher For(Uri executorHostUri)
    {
        var port = configuration["DAPR_HTTP_PORT"] is { Length: > 0 } p ? p : "3500";
        var node = new Uri($"http://127.0.0.1:{port}/v1.0/invoke/{Uri.EscapeDataString(executorHostUri.Host)}/method/");
        var client = clients.CreateClient(RemoteJobTransport.HttpClientName);
        if (configuration["DAPR_API_TOKEN"] is { Length: > 0 } daprToken && !client.DefaultRequestHeaders.Contains("dapr-api-token"))
            client.DefaultRequestHeaders.Add("dapr-api-token", daprToken);
        return new RemoteJobLauncher(client, node, RemoteJobTransport.NodeToken(configuration, executorHostUri), loggers.CreateLogger<RemoteJobLauncher>());
    }
}
