using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr.Invocation;

/// <summary>Executors whose executor_host_uri is <c>dapr://{app-id}</c> are reached by Dapr service invocation.</summary>
public sealed class DaprExecutorTransport(IHttpClientFactory clients) : IExecutorTransport
{
    /// <summary>The named HttpClient pointed at the local sidecar's HTTP endpoint.</summary>
    public const string HttpClientName = "dapr-invocation";

    public bool CanHandle(Uri executorHostUri) =>
        executorHostUri.Scheme.Equals(DaprNames.UriScheme, StringComparison.OrdinalIgnoreCase) && executorHostUri.Host.Length > 0;

    public IPolicyExecutor For(Uri executorHostUri) => new DaprInvokedExecutor(clients.CreateClient(HttpClientName), executorHostUri.Host);
}
