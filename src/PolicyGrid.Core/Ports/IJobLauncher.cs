using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// What a launcher needs to run one Type 3 job: the job's id, the policy it runs (the stored
/// PolicyRule document, so a launcher that ships the job elsewhere need not look it up again), the
/// caller's parameter overrides, the one input, where it may run and for how long.
/// <see cref="ResultToken"/> is the per-job secret a remote runner presents when it reports its result.
/// </summary>
public sealed record JobLaunch(
    string JobId,
    JsonObject Policy,
    JsonObject Parameters,
    JsonNode Inputs,
    IReadOnlyDictionary<string, string> NodeSelector,
    TimeSpan Timeout,
    JobResources Resources,
    string ResultToken = "")
{
    public string PolicyRuleUri => Policy["policy_rule_uri"]?.GetValue<string>() ?? "";
}

/// <summary>CPU and memory a job asks for (Kubernetes quantities such as <c>500m</c>, <c>256Mi</c>), from the policy's resource_estimates.</summary>
public sealed record JobResources(string? Cpu, string? Memory)
{
    public static readonly JobResources None = new(null, null);
}

/// <summary>How a job's run ended as its launcher saw it.</summary>
public enum JobEnd
{
    /// <summary>The job's process ended normally; the job reported its own result (through the store or the result callback).</summary>
    Exited,
    /// <summary>The launcher carries the result itself (a remote executor node answered it).</summary>
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

/// <summary>The end of a run: how it ended, why (for failures), and the result when the launcher holds it.</summary>
public sealed record JobOutcome(JobEnd End, string Error = "", JsonNode? Result = null)
{
    public static JobOutcome Exited() => new(JobEnd.Exited);
    public static JobOutcome Failed(string error) => new(JobEnd.Failed, error);
    public static JobOutcome TimedOut(string error) => new(JobEnd.TimedOut, error);
    public static JobOutcome Cancelled(string reason) => new(JobEnd.Cancelled, reason);
}

/// <summary>
/// Runs Type 3 jobs: one policy evaluation away from the request path, each in its own process
/// (embedded: a local OS process; Kubernetes: a batch/v1 Job; remote: an executor node's job routes).
/// Launchers never write the job document themselves: the job board does, so a result is recorded once.
/// </summary>
public interface IJobLauncher
{
    /// <summary>
    /// Starts the job and follows it to its end. Cancelling <paramref name="ct"/> stops following
    /// (the server is shutting down) but leaves the job running; <see cref="CancelAsync"/> stops the job.
    /// </summary>
    Task<JobOutcome> RunAsync(JobLaunch launch, CancellationToken ct);

    /// <summary>
    /// Follows a job started before this process restarted. Answers how it ended, or
    /// <see cref="JobEnd.Failed"/> with the reason when it is gone without a trace.
    /// </summary>
    Task<JobOutcome> ReattachAsync(string jobId, CancellationToken ct);

    /// <summary>Stops the job if it is still running (idempotent); its run then ends as <see cref="JobEnd.Cancelled"/>.</summary>
    Task CancelAsync(string jobId, CancellationToken ct);

    /// <summary>
    /// Removes what this launcher keeps of an ended job besides its record (a local job's output log), when job retention
    /// removes the record. Nothing to remove is no error; launchers that keep nothing need not implement it.
    /// </summary>
    Task ForgetAsync(string jobId, CancellationToken ct) => Task.CompletedTask;
}

/// <summary>
/// Reaches the job launcher of one executor URI scheme (<c>inproc://</c> → this node's launcher,
/// <c>http(s)://</c> → a remote executor node, <c>dapr://</c> → service invocation), as
/// <see cref="IExecutorTransport"/> does for Type 2.
/// </summary>
public interface IJobTransport
{
    bool CanHandle(Uri executorHostUri);
    IJobLauncher For(Uri executorHostUri);
}

/// <summary>What an executor-node install or removal did, one line per Kubernetes object.</summary>
public sealed record InfraChange(string Kind, string Name, string Namespace, string Action);

/// <summary>The outcome of create-infra / remove-infra: the objects touched and the node's in-cluster URL.</summary>
public sealed record InfraReport(string ExecutorId, string Namespace, string ServiceUrl, IReadOnlyList<InfraChange> Changes)
{
    /// <summary>What the operator should know about the node as installed, e.g. that it takes calls without a token, and how to change it.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];
}

/// <summary>
/// Installs or removes an executor node in a Kubernetes cluster, given a kubeconfig (as JSON) that is
/// used for that one call and never kept. Kubeconfigs that would run programs or read local files
/// are refused with a 400 before anything is contacted.
/// </summary>
public interface IClusterInstaller
{
    Task<InfraReport> InstallAsync(string executorId, JsonObject clusterConfig, CancellationToken ct);
    Task<InfraReport> RemoveAsync(string executorId, JsonObject clusterConfig, CancellationToken ct);
}
