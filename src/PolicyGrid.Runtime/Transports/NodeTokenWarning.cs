using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace PolicyGrid.Runtime.Transports;

/// <summary>
/// Says at start when <c>RemoteExecutors:Token</c> goes to every executor node: any writer can register an executor
/// at an address of their own and receive it. Listing the nodes in <c>RemoteExecutors:TokenNodes</c> ends that.
/// </summary>
internal sealed class NodeTokenWarning(PolicyRuntimeOptions options, ILogger<NodeTokenWarning> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        var remote = options.RemoteExecutors;
        if (!string.IsNullOrEmpty(remote.Token) && remote.TokenNodes.Length == 0)
            logger.LogWarning("{Section}:RemoteExecutors:Token is sent to every executor node, including any address a writer registers as an executor; " +
                "list the nodes it is for in {Section}:RemoteExecutors:TokenNodes", PolicyRuntimeOptions.Section, PolicyRuntimeOptions.Section);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
