using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Api.Executors;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Jobs;

/// <summary>Picks the launcher for an executor from its executor_host_uri scheme.</summary>
public sealed class JobTransports(IEnumerable<IJobTransport> transports, ExecutorOutages outages, IServiceProvider services)
{
    public IJobLauncher For(PolicyExecutor executor)
    {
        if (!Uri.TryCreate(executor.ExecutorHostUri, UriKind.Absolute, out var uri))
            throw Problems.BackendError($"executor '{executor.ExecutorId}' has an unreadable executor_host_uri");
        var transport = transports.FirstOrDefault(t => t.CanHandle(uri))
            ?? throw Problems.BackendError($"executor '{executor.ExecutorId}' is a '{uri.Scheme}://' executor, and this server cannot run jobs on those");
        var launcher = transport.For(uri);
        // A node's outage is logged once for the executor, as its Type 2 and function calls log it, not once per job and poll.
        return launcher is RemoteJobLauncher remote ? remote.ReportingAs(executor.ExecutorId, outages) : launcher;
    }

    /// <summary>This server's own launcher (local processes or Kubernetes Jobs), for jobs it runs itself.</summary>
    public IJobLauncher NodeLauncher() =>
        services.GetService<IJobLauncher>() ?? throw Problems.BackendUnavailable("this server has no job launcher configured");
}

/// <summary><c>inproc://</c> executors: jobs run on this server's own launcher.</summary>
public sealed class InprocJobTransport(IServiceProvider services) : IJobTransport
{
    public bool CanHandle(Uri executorHostUri) => executorHostUri.Scheme == "inproc";

    public IJobLauncher For(Uri executorHostUri) =>
        services.GetService<IJobLauncher>() ?? throw Problems.BackendUnavailable("this server has no job launcher configured");
}
