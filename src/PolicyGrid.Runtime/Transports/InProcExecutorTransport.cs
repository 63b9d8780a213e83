using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Runtime.Transports;

/// <summary><c>inproc://local</c>: the built-in executor, this server's own worker pool.</summary>
public sealed class InProcExecutorTransport(LocalPolicyExecutor local) : IExecutorTransport
{
    public const string Scheme = "inproc";
    public const string LocalHost = "local";

    public bool CanHandle(Uri executorHostUri) =>
        executorHostUri is not null && string.Equals(executorHostUri.Scheme, Scheme, StringComparison.OrdinalIgnoreCase);

    public IPolicyExecutor For(Uri executorHostUri)
    {
        ArgumentNullException.ThrowIfNull(executorHostUri);
        if (!string.Equals(executorHostUri.Host, LocalHost, StringComparison.OrdinalIgnoreCase))
            // Registration refuses such a URI (PolicyExecutor): one stored by other means is the executor's fault, not the caller's.
            throw Problems.BackendError($"'{executorHostUri.OriginalString}' names no in-process executor; only inproc://local exists");
        return local;
    }
}
