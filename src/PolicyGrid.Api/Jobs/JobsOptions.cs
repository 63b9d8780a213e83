namespace PolicyGrid.Api.Jobs;

/// <summary>Type 3 settings (configuration section <c>PolicyGrid:Jobs</c>).</summary>
public sealed class JobsOptions
{
    public const string Section = "PolicyGrid:Jobs";

    /// <summary>Deadline when neither the submission nor the policy's resource_estimates.timeout_seconds gives one.</summary>
    public double DefaultTimeoutSeconds { get; set; } = 3600;

    /// <summary>Longest deadline a job may ask for.</summary>
    public double MaxTimeoutSeconds { get; set; } = 24 * 3600;

    /// <summary>
    /// Seconds past a job's timeout after which the board itself records it timed out when its launcher
    /// has reported nothing (a node that vanished). Launchers enforce the timeout first; this is the backstop.
    /// </summary>
    public double DeadlineGraceSeconds { get; set; } = 300;

    /// <summary>Longest <c>?wait=</c> a GET may hold the connection open.</summary>
    public double MaxWaitSeconds { get; set; } = 300;

    /// <summary>
    /// The URI of a registered policy that picks the executor for submissions that name none (the
    /// "resource allocator policy"); empty uses the built-in rule (healthy, labels match, most free vCPUs).
    /// It gets <c>{"job": ..., "executors": [...]}</c> and answers <c>{"executor_id": "..."}</c>.
    /// </summary>
    public string AllocatorPolicy { get; set; } = "";

    /// <summary>
    /// The executor id this server itself is (e.g. <c>dapr</c> on the policy-executor app, the
    /// POLICYGRID_EXECUTOR_ID of a node installed by create-infra). Jobs recorded for it are run and
    /// re-attached with this server's own launcher even when the store is shared with a registry.
    /// </summary>
    public string NodeExecutorId { get; set; } = "";

    /// <summary>Which launcher runs this node's own jobs: <c>local</c> (OS processes) or <c>kubernetes</c>.</summary>
    public string Launcher { get; set; } = "local";
}
