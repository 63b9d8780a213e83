using System.Globalization;
using System.Text.Json.Nodes;
using k8s.Models;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Kubernetes;

/// <summary>
/// The batch/v1 Job that runs one PolicyGrid job: one pod, never retried (a policy evaluation
/// that failed once fails again, and a retry could repeat side effects), stopped by Kubernetes at
/// the deadline, cleaned up after <see cref="KubernetesJobOptions.TtlSecondsAfterFinished"/>,
/// unprivileged and with a read-only root filesystem.
/// </summary>
public static class JobManifest
{
    public const string JobIdLabel = "policygrid.io/job-id";
    public const string RunnerContainer = "runner";

    /// <summary>
    /// The runner's environment variable saying when Kubernetes stops its pod (UTC, ISO 8601): the Job's creation plus its
    /// activeDeadlineSeconds. The Job's clock starts when its controller sees it, a moment after, so this is never later
    /// than the real deadline; the runner tries to deliver its result until shortly before it.
    /// </summary>
    public const string DeadlineVariable = "POLICYGRID_JOB_DEADLINE";

    /// <summary>The Job for <paramref name="launch"/>, created at <paramref name="createdAt"/> (its pod's deadline counts from then).</summary>
    public static V1Job Build(JobLaunch launch, string @namespace, string resultToken, KubernetesJobOptions options, DateTimeOffset createdAt)
    {
        var name = KubernetesNames.JobName(launch.JobId);
        var labels = new Dictionary<string, string>
        {
            ["app.kubernetes.io/name"] = "policygrid-job",
            ["app.kubernetes.io/managed-by"] = KubernetesNames.ManagedBy,
            [JobIdLabel] = launch.JobId,
        };
        var timeoutSeconds = (long)Math.Ceiling(launch.Timeout.TotalSeconds);
        var policy = (JsonObject)launch.Policy.DeepClone();
        // The pod has no bundle store: code held by the node is fetched from the node's own bundle URL.
        var fromNode = options.ResultCallbackUrl.Length > 0
            && policy["code"]?.GetValue<string>() is { } code && code.StartsWith(BundleRef.Scheme, StringComparison.Ordinal);
        if (fromNode)
            policy["code"] = $"{options.ResultCallbackUrl.TrimEnd('/')}/bundles/sha256/{policy["code"]!.GetValue<string>()[BundleRef.Scheme.Length..]}";
        var spec = new JsonObject
        {
            ["job_id"] = launch.JobId,
            ["policy"] = policy,
            ["parameters"] = launch.Parameters.DeepClone(),
            ["inputs"] = launch.Inputs.DeepClone(),
            ["timeout_seconds"] = timeoutSeconds,
        };
        var activeDeadlineSeconds = timeoutSeconds + options.StartupAllowanceSeconds;
        var env = new List<V1EnvVar>
        {
            Env("POLICYGRID_JOB_ID", launch.JobId),
            Env("POLICYGRID_JOB_SPEC", spec.ToJsonString()),
            Env("POLICYGRID_JOB_TOKEN", resultToken),
            Env(DeadlineVariable, Timestamps.Format(createdAt + TimeSpan.FromSeconds(activeDeadlineSeconds))),
            Env("HOME", "/tmp"),
        };
        if (fromNode) env.Add(Env("PolicyGrid__Runtime__Bundles__AllowPrivateNetworks", "true"));
        if (options.ResultCallbackUrl.Length > 0)
            env.Insert(1, Env("POLICYGRID_RESULT_URL", $"{options.ResultCallbackUrl.TrimEnd('/')}/jobs/{Uri.EscapeDataString(launch.JobId)}/result"));

        return new V1Job
        {
            ApiVersion = "batch/v1",
            Kind = "Job",
            Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = @namespace, Labels = labels },
            Spec = new V1JobSpec
            {
                BackoffLimit = 0,
                // The policy's own deadline is enforced inside the pod; this one also covers image pulls
                // and a runner that hangs before it can report.
                ActiveDeadlineSeconds = activeDeadlineSeconds,
                TtlSecondsAfterFinished = options.TtlSecondsAfterFinished,
                Template = new V1PodTemplateSpec
                {
                    Metadata = new V1ObjectMeta { Labels = labels },
                    Spec = new V1PodSpec
                    {
                        RestartPolicy = "Never",
                        ServiceAccountName = options.ServiceAccountName.Length > 0 ? options.ServiceAccountName : null,
                        AutomountServiceAccountToken = options.ServiceAccountName.Length > 0,
                        NodeSelector = launch.NodeSelector.Count > 0 ? new Dictionary<string, string>(launch.NodeSelector) : null,
                        SecurityContext = new V1PodSecurityContext
                        {
                            RunAsNonRoot = true,
                            RunAsUser = options.RunAsUser,
                            RunAsGroup = options.RunAsUser,
                            FsGroup = options.RunAsUser,
                            SeccompProfile = new V1SeccompProfile { Type = "RuntimeDefault" },
                        },
                        Containers =
                        [
                            new V1Container
                            {
                                Name = RunnerContainer,
                                Image = options.RunnerImage,
                                Args = ["job-run"],
                                Env = env,
                                Resources = Resources(launch.Resources),
                                SecurityContext = new V1SecurityContext
                                {
                                    AllowPrivilegeEscalation = false,
                                    ReadOnlyRootFilesystem = true,
                                    Capabilities = new V1Capabilities { Drop = ["ALL"] },
                                },
                                VolumeMounts = [new V1VolumeMount { MountPath = "/tmp", Name = "tmp" }],
                            },
                        ],
                        Volumes = [new V1Volume { Name = "tmp", EmptyDir = new V1EmptyDirVolumeSource { SizeLimit = new ResourceQuantity("1Gi") } }],
                    },
                },
            },
        };
    }

    /// <summary>
    /// The most bytes Linux takes for one environment string, <c>NAME=value</c> and its closing NUL (MAX_ARG_STRLEN, 32
    /// pages of 4 KiB): past it the container's process cannot be started at all ("argument list too long").
    /// </summary>
    public const int MaxEnvironmentStringBytes = 32 * 4096;

    /// <summary>
    /// Why the runner of <paramref name="job"/> could not be started, or null: an environment variable longer than Linux
    /// allows. <c>POLICYGRID_JOB_SPEC</c> carries the policy snapshot, parameters and inputs, which the API lets reach 1 MiB.
    /// </summary>
    public static string? Unstartable(V1Job job)
    {
        foreach (var env in job.Spec.Template.Spec.Containers.SelectMany(c => c.Env ?? []))
        {
            var bytes = System.Text.Encoding.UTF8.GetByteCount(env.Name) + System.Text.Encoding.UTF8.GetByteCount(env.Value ?? "") + 2;
            if (bytes > MaxEnvironmentStringBytes)
                return $"the job is too large to run as a Kubernetes Job: its pod gets the policy snapshot, parameters and inputs in the "
                    + $"environment variable {env.Name}, which here is {bytes} bytes, and Linux starts no process with an environment "
                    + $"string over {MaxEnvironmentStringBytes} bytes (128 KiB); send smaller inputs (or parameters)";
        }
        return null;
    }

    private static V1EnvVar Env(string name, string value) => new() { Name = name, Value = value };

    // Requests and limits alike: a job is a batch workload that should get what it asked for and no more.
    private static V1ResourceRequirements? Resources(JobResources resources)
    {
        var quantities = new Dictionary<string, ResourceQuantity>();
        if (resources.Cpu is { Length: > 0 } cpu) quantities["cpu"] = new ResourceQuantity(cpu);
        if (resources.Memory is { Length: > 0 } memory) quantities["memory"] = new ResourceQuantity(memory);
        if (quantities.Count == 0) return null;
        return new V1ResourceRequirements
        {
            Requests = new Dictionary<string, ResourceQuantity>(quantities),
            Limits = new Dictionary<string, ResourceQuantity>(quantities),
        };
    }

    /// <summary>Seconds as the string form Kubernetes manifests use.</summary>
    internal static string Seconds(double seconds) => seconds.ToString("0", CultureInfo.InvariantCulture);
}
