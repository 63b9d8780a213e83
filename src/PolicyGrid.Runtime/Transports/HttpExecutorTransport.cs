using Microsoft.Extensions.Options;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Runtime.Transports;

/// <summary><c>http(s)://host:port</c>: a remote executor node answering the contract's node API.</summary>
public sealed class HttpExecutorTransport(IHttpClientFactory clients, IOptions<PolicyRuntimeOptions> options, DecisionLog? decisions = null, IDocumentStore? policies = null) : IExecutorTransport
{
    /// <summary>The named HttpClient (with its resilience pipeline, one circuit per node) used for nodes.</summary>
    public const string ClientName = "policygrid-executor-nodes";

    public bool CanHandle(Uri executorHostUri) =>
        executorHostUri is { IsAbsoluteUri: true } && (executorHostUri.Scheme == Uri.UriSchemeHttp || executorHostUri.Scheme == Uri.UriSchemeHttps);

    public IPolicyExecutor For(Uri executorHostUri) =>
        new RemoteExecutorClient(clients.CreateClient(ClientName), executorHostUri, options.Value.RemoteExecutors, options.Value.Execution, decisions, policies);
}
