namespace PolicyGrid.Kubernetes;

/// <summary>How the executor node runs Type 3 jobs in its own cluster (configuration section <c>PolicyGrid:Jobs:Kubernetes</c>).</summary>
public sealed class KubernetesJobOptions
{
    public const string Section = "PolicyGrid:Jobs:Kubernetes";

    /// <summary>Namespace the node's Jobs go to; empty means the namespace the node itself runs in.</summary>
    public string Namespace { get; set; } = "";

    /// <summary>Image whose entrypoint is <c>policygrid job-run</c> (deploy/docker/job-runner.Dockerfile).</summary>
    public string RunnerImage { get; set; } = "policygrid/job-runner:latest";

    /// <summary>Base URL the runner posts its result to (<c>POST {url}/jobs/{id}/result</c>): the node's in-cluster service URL.</summary>
    public string ResultCallbackUrl { get; set; } = "";

    /// <summary>How long finished Jobs (and their pods and logs) stay in the cluster.</summary>
    public int TtlSecondsAfterFinished { get; set; } = 3600;

    /// <summary>The unprivileged uid/gid the runner runs as (the .NET images' non-root user).</summary>
    public long RunAsUser { get; set; } = 1654;

    /// <summary>A ServiceAccount for job pods; empty means none and no token mounted (the runner needs no API access).</summary>
    public string ServiceAccountName { get; set; } = "";

    /// <summary>First and longest wait between status polls of a running Job.</summary>
    public TimeSpan PollInitial { get; set; } = TimeSpan.FromSeconds(1);
    public TimeSpan PollMax { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Extra seconds a Job may live past the job's own timeout (image pull, start-up) before Kubernetes stops it.</summary>
    public int StartupAllowanceSeconds { get; set; } = 120;

    /// <summary>
    /// How long the runner container may keep waiting on an image it cannot pull (<c>ErrImagePull</c>,
    /// <c>ImagePullBackOff</c>) or a container the runtime could not create (<c>CreateContainerError</c>) before the job
    /// fails and its Job is deleted: these can pass (a registry's hiccup). <c>InvalidImageName</c> and
    /// <c>CreateContainerConfigError</c> cannot, and fail the job at once.
    /// </summary>
    public TimeSpan StartFailureGrace { get; set; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// Refuses at start what would make every job fail only once it ran: no runner image; no (or no absolute http(s))
/// result URL, so runners post their results nowhere; uid 0, which <c>runAsNonRoot</c> keeps from starting at all; a
/// negative TTL or start-up allowance, which the API server refuses for each Job; polls that never wait.
/// </summary>
public sealed class KubernetesJobOptionsValidator : Microsoft.Extensions.Options.IValidateOptions<KubernetesJobOptions>
{
    public Microsoft.Extensions.Options.ValidateOptionsResult Validate(string? name, KubernetesJobOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var checks = new PolicyGrid.Runtime.SettingChecks(KubernetesJobOptions.Section);
        checks.Check(!string.IsNullOrWhiteSpace(options.RunnerImage), "RunnerImage", "the job runner's image (deploy/docker/job-runner.Dockerfile)", "empty");
        checks.Check(Uri.TryCreate(options.ResultCallbackUrl, UriKind.Absolute, out var url) && url.Scheme is "http" or "https",
            "ResultCallbackUrl", "this node's http(s) URL as job pods reach it (its Service), where runners post their results",
            options.ResultCallbackUrl.Length == 0 ? "empty" : $"'{options.ResultCallbackUrl}'");
        checks.Check(options.RunAsUser > 0, "RunAsUser", "a uid greater than 0 (job pods run as non-root)", options.RunAsUser);
        checks.Check(options.TtlSecondsAfterFinished >= 0, "TtlSecondsAfterFinished", "0 or more", options.TtlSecondsAfterFinished);
        checks.Check(options.StartupAllowanceSeconds >= 0, "StartupAllowanceSeconds", "0 or more", options.StartupAllowanceSeconds);
        checks.Check(options.StartFailureGrace >= TimeSpan.Zero, "StartFailureGrace", "0 or more", options.StartFailureGrace);
        checks.Check(options.PollInitial > TimeSpan.Zero, "PollInitial", "greater than zero", options.PollInitial);
        checks.Check(options.PollMax >= options.PollInitial, "PollMax", $"at least PollInitial ({options.PollInitial})", options.PollMax);
        return checks.Result;
    }
}

/// <summary>What create-infra installs (configuration section <c>PolicyGrid:Infra</c>).</summary>
public sealed class ExecutorNodeOptions
{
    public const string Section = "PolicyGrid:Infra";

    /// <summary>Namespace used when the kubeconfig's context names none.</summary>
    public string Namespace { get; set; } = "policygrid";

    /// <summary>The executor node image (services/PolicyGrid.Executor).</summary>
    public string NodeImage { get; set; } = "policygrid/executor:latest";

    /// <summary>The job runner image the node launches (see <see cref="KubernetesJobOptions.RunnerImage"/>).</summary>
    public string RunnerImage { get; set; } = "policygrid/job-runner:latest";

    /// <summary>Port the node listens on inside its pod.</summary>
    public int ContainerPort { get; set; } = 5101;

    public int Replicas { get; set; } = 1;
}
