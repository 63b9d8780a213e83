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

    /// <summary>
    /// How long the record of an ended job (and a local job's log) is kept after it ended, for callers still to read its
    /// result; zero keeps them for ever. Pending and running jobs are never removed.
    /// </summary>
    public TimeSpan KeepEndedJobsFor { get; set; } = TimeSpan.FromDays(7);

    /// <summary>Most records of ended jobs kept; the ones that ended first go first. Zero sets no limit. Open jobs are never counted or removed.</summary>
    public int MaxEndedJobs { get; set; } = 10_000;

    /// <summary>How often ended jobs past those limits are removed.</summary>
    public TimeSpan PruneInterval { get; set; } = TimeSpan.FromMinutes(10);
}

/// <summary>Refuses job settings out of range at start, naming each.</summary>
public sealed class JobsOptionsValidator : Microsoft.Extensions.Options.IValidateOptions<JobsOptions>
{
    public Microsoft.Extensions.Options.ValidateOptionsResult Validate(string? name, JobsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var checks = new PolicyGrid.Runtime.SettingChecks(JobsOptions.Section);
        checks.Check(options.KeepEndedJobsFor >= TimeSpan.Zero, "KeepEndedJobsFor", "zero (keep for ever) or more", options.KeepEndedJobsFor);
        checks.Check(options.MaxEndedJobs >= 0, "MaxEndedJobs", "0 (no limit) or more", options.MaxEndedJobs);
        checks.Check(options.PruneInterval > TimeSpan.Zero, "PruneInterval", "greater than zero", options.PruneInterval);
        checks.Check(options.Launcher.Equals("local", StringComparison.OrdinalIgnoreCase) || options.Launcher.Equals("kubernetes", StringComparison.OrdinalIgnoreCase),
            "Launcher", "\"local\" (OS processes) or \"kubernetes\" (Kubernetes Jobs)", $"'{options.Launcher}'");
        return checks.Result;
    }
}
