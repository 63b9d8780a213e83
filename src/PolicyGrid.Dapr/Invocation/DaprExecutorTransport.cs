using Microsoft.Extensions.Options;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime;

namespace PolicyGrid.Dapr.Invocation;

/// <summary>Executors whose executor_host_uri is <c>dapr://{app-id}</c> are reached by Dapr service invocation.</summary>
public sealed class DaprExecutorTransport(IHttpClientFactory clients, IOptions<PolicyRuntimeOptions>? runtime = null) : IExecutorTransport
{
    /// <summary>The named HttpClient pointed at the local sidecar's HTTP endpoint.</summary>
    public const string HttpClientName = "dapr-invocation";

    /// <summary>Room beyond one attempt for the sidecar's retries of calls that never ran (429, 503: see the resiliency policy).</summary>
    public static readonly TimeSpan RetryRoom = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a call may wait for its answer: the longest policy deadline plus the network's share, as for http(s)
    /// executors, and room for the sidecar's retries. The node answers 504 policy_timeout itself before this.
    /// </summary>
    public TimeSpan CallTimeout { get; } = Bound(runtime?.Value ?? new PolicyRuntimeOptions());

    private static TimeSpan Bound(PolicyRuntimeOptions options) =>
        options.Execution.MaxTimeout + options.RemoteExecutors.Overhead + RetryRoom;

    public bool CanHandle(Uri executorHostUri) =>
        executorHostUri.Scheme.Equals(DaprNames.UriScheme, StringComparison.OrdinalIgnoreCase) && executorHostUri.Host.Length > 0;

    public IPolicyExecutor For(Uri executorHostUri) => new DaprInvokedExecutor(clients.CreateClient(HttpClientName), executorHostUri.Host, CallTimeout);
}
