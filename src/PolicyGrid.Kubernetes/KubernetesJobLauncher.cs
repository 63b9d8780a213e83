using System.Collections.Concurrent;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Kubernetes;

/// <summary>
/// Runs each job as a batch/v1 Job in the executor node's own cluster, with the node's in-cluster
/// ServiceAccount, and follows it by polling its status with backoff. The runner pod reports the
/// result itself (callback with the job's token), so this launcher only says how the Job ended:
/// complete → <see cref="JobEnd.Exited"/>; failed past activeDeadlineSeconds → timed out; any other
/// failure → failed, with the pod's termination reason and the tail of its log.
/// </summary>
public sealed class KubernetesJobLauncher(IKubernetes client, IOptions<KubernetesJobOptions> options, ILogger<KubernetesJobLauncher> logger, TimeProvider? clock = null) : IJobLauncher
{
    private readonly TimeProvider clock = clock ?? TimeProvider.System;
    private const string ServiceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
    private readonly ConcurrentDictionary<string, TaskCompletionSource> cancelled = new();

    public string Namespace { get; } = ResolveNamespace(options.Value.Namespace);

    public async Task<JobOutcome> RunAsync(JobLaunch launch, CancellationToken ct)
    {
        var manifest = JobManifest.Build(launch, Namespace, launch.ResultToken, options.Value, clock.GetUtcNow());
        // Refused here, at once: created, its pod could never start, and the job would end only at its deadline (timeout
        // plus the start-up allowance) as timed out.
        if (JobManifest.Unstartable(manifest) is { } why) return JobOutcome.Failed(why);
        try
        {
            await client.BatchV1.CreateNamespacedJobAsync(manifest, Namespace, cancellationToken: ct);
            logger.LogInformation("job {JobId}: created Kubernetes Job {Namespace}/{Name}", launch.JobId, Namespace, manifest.Metadata.Name);
        }
        catch (Exception e) when (KubernetesFailure.IsConflict(e))
        {
            // Created by an earlier attempt of this same job (the node restarted between create and record): follow that one.
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return JobOutcome.Failed(KubernetesFailure.Describe(e, $"create Job {Namespace}/{manifest.Metadata.Name}").Message);
        }
        return await FollowAsync(launch.JobId, ct);
    }

    public Task<JobOutcome> ReattachAsync(string jobId, CancellationToken ct) => FollowAsync(jobId, ct);

    public async Task CancelAsync(string jobId, CancellationToken ct)
    {
        // Signalled before the delete, so a follower that then finds the Job gone knows why.
        cancelled.GetOrAdd(jobId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        var name = KubernetesNames.JobName(jobId);
        try
        {
            // Background propagation deletes the pod too, which stops the policy.
            await client.BatchV1.DeleteNamespacedJobAsync(name, Namespace, propagationPolicy: "Background", cancellationToken: ct);
            logger.LogInformation("job {JobId}: deleted Kubernetes Job {Namespace}/{Name} (cancelled)", jobId, Namespace, name);
        }
        catch (Exception e) when (KubernetesFailure.IsNotFound(e))
        {
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw KubernetesFailure.Describe(e, $"delete Job {Namespace}/{name}");
        }
    }

    private async Task<JobOutcome> FollowAsync(string jobId, CancellationToken ct)
    {
        var name = KubernetesNames.JobName(jobId);
        var delay = options.Value.PollInitial;
        var signal = cancelled.GetOrAdd(jobId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        var start = new RunnerStart();
        try
        {
            while (true)
            {
                if (signal.Task.IsCompleted) return JobOutcome.Cancelled("cancelled");
                V1Job job;
                try
                {
                    // The Job itself, status included: its /status subresource is a resource of its own to RBAC ("jobs/status"),
                    // which the node's Role does not grant, so reading it was a 403 for every job in a real cluster.
                    job = await client.BatchV1.ReadNamespacedJobAsync(name, Namespace, cancellationToken: ct);
                }
                catch (Exception e) when (KubernetesFailure.IsNotFound(e))
                {
                    return signal.Task.IsCompleted
                        ? JobOutcome.Cancelled("cancelled")
                        : JobOutcome.Failed($"the Kubernetes Job {Namespace}/{name} no longer exists (deleted outside PolicyGrid)");
                }
                catch (Exception e) when (KubernetesFailure.IsTransient(e) && !ct.IsCancellationRequested)
                {
                    logger.LogWarning("job {JobId}: reading Kubernetes Job status failed ({Error}); retrying", jobId, e.Message);
                    job = new V1Job();
                }
                catch (Exception e) when (e is not OperationCanceledException && !ct.IsCancellationRequested)
                {
                    // A refusal (a 403, a 401) stays one: the job is recorded failed, with what the API server said, and its
                    // Job deleted, so nothing runs on unwatched while its record says it ended (the raw client error was all
                    // the record said, and the pod ran on).
                    return JobOutcome.Failed(await GiveUpAsync(jobId, KubernetesFailure.Describe(e, $"read Job {Namespace}/{name}").Message));
                }

                if (Condition(job, "Complete")) return JobOutcome.Exited();
                if (Condition(job, "Failed") is var failed && failed)
                {
                    var reason = job.Status?.Conditions?.FirstOrDefault(c => c.Type == "Failed")?.Reason ?? "";
                    var detail = await PodDetailAsync(jobId, ct);
                    return reason == "DeadlineExceeded"
                        ? JobOutcome.TimedOut($"the job ran past its deadline ({job.Spec?.ActiveDeadlineSeconds}s) and Kubernetes stopped it{detail}")
                        : JobOutcome.Failed($"the Kubernetes Job failed ({(reason.Length > 0 ? reason : "no reason given")}){detail}");
                }

                if (!start.Started && await CannotStartAsync(jobId, start, ct) is { } why)
                    return JobOutcome.Failed(await GiveUpAsync(jobId, why));

                await Task.WhenAny(Task.Delay(delay, ct), signal.Task);
                ct.ThrowIfCancellationRequested();
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, options.Value.PollMax.Ticks));
            }
        }
        finally
        {
            cancelled.TryRemove(new KeyValuePair<string, TaskCompletionSource>(jobId, signal));
        }
    }

    // Waiting reasons of a runner container that never starts. A pod stuck on one used to wait until the Job's deadline
    // (timeout + start-up allowance), by when Kubernetes had removed the pod and its reason with it.
    private static readonly HashSet<string> FailAtOnce = new(StringComparer.Ordinal) { "InvalidImageName", "CreateContainerConfigError", "ErrImageNeverPull" };
    private static readonly HashSet<string> FailOncePersisting = new(StringComparer.Ordinal) { "ErrImagePull", "ImagePullBackOff", "CreateContainerError" };

    /// <summary>Whether the runner container has started, and since when it has waited on a reason that may pass.</summary>
    private sealed class RunnerStart
    {
        public bool Started;
        public DateTimeOffset? FailingSince;
    }

    /// <summary>
    /// Why the job's runner container will not start, or null while it may: read from its pod until it runs (then never
    /// again, so a running job costs no pod reads). A pod that cannot be read now is asked about at the next poll.
    /// </summary>
    private async Task<string?> CannotStartAsync(string jobId, RunnerStart start, CancellationToken ct)
    {
        V1ContainerState? state;
        try
        {
            var pods = await client.CoreV1.ListNamespacedPodAsync(Namespace, labelSelector: $"{JobManifest.JobIdLabel}={jobId}", cancellationToken: ct);
            state = pods.Items.Select(p => p.Status?.ContainerStatuses?.FirstOrDefault(s => s.Name == JobManifest.RunnerContainer)?.State)
                .FirstOrDefault(s => s is not null);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogWarning("job {JobId}: could not read its pod's status ({Error}); asking again at the next poll", jobId, e.Message);
            return null;
        }
        if (state?.Running is not null || state?.Terminated is not null)
        {
            start.Started = true;
            return null;
        }
        if (state?.Waiting is not { Reason: { Length: > 0 } reason } waiting || !(FailAtOnce.Contains(reason) || FailOncePersisting.Contains(reason)))
        {
            start.FailingSince = null;
            return null;
        }
        var now = clock.GetUtcNow();
        start.FailingSince ??= now;
        var waited = now - start.FailingSince.Value;
        if (!FailAtOnce.Contains(reason) && waited < options.Value.StartFailureGrace) return null;
        var detail = string.IsNullOrWhiteSpace(waiting.Message) ? "" : $": {waiting.Message.Trim()}";
        var persisted = FailAtOnce.Contains(reason) ? "" : $" (for {waited.TotalSeconds:0} s; {KubernetesJobOptions.Section}:StartFailureGrace is {options.Value.StartFailureGrace.TotalSeconds:0} s)";
        logger.LogWarning("job {JobId}: its container cannot start ({Reason}{Detail}); failing it", jobId, reason, detail);
        return $"the job's container could not start: {reason}{detail}{persisted}";
    }

    private async Task<string> GiveUpAsync(string jobId, string why)
    {
        try
        {
            await CancelAsync(jobId, CancellationToken.None);
            return $"{why}; the Kubernetes Job was deleted";
        }
        catch (PolicyGrid.Core.Errors.PolicyGridException e)
        {
            logger.LogWarning("job {JobId}: following it failed ({Why}) and deleting its Kubernetes Job failed too ({Error})", jobId, why, e.Message);
            return $"{why}; deleting the Kubernetes Job failed too ({e.Message}), so it may still run";
        }
    }

    private static bool Condition(V1Job job, string type) =>
        job.Status?.Conditions?.Any(c => c.Type == type && string.Equals(c.Status, "True", StringComparison.OrdinalIgnoreCase)) == true;

    // Why the pod ended and the last lines it printed: what an operator needs to see in the job's error.
    private async Task<string> PodDetailAsync(string jobId, CancellationToken ct)
    {
        V1Pod? pod;
        try
        {
            var pods = await client.CoreV1.ListNamespacedPodAsync(Namespace, labelSelector: $"{JobManifest.JobIdLabel}={jobId}", cancellationToken: ct);
            pod = pods.Items.FirstOrDefault();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogWarning("job {JobId}: could not read the pod's status ({Error})", jobId, e.Message);
            return "";
        }
        if (pod is null) return "";
        var text = PodState(pod);
        try
        {
            await using var log = await client.CoreV1.ReadNamespacedPodLogAsync(pod.Metadata.Name, Namespace, container: JobManifest.RunnerContainer, tailLines: 20, cancellationToken: ct);
            using var reader = new StreamReader(log);
            var tail = (await reader.ReadToEndAsync(ct)).Trim();
            if (tail.Length > 2000) tail = "…" + tail[^2000..];
            return tail.Length > 0 ? $"{text}; log tail:\n{tail}" : text;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A pod evicted, or one whose container never started, has no log: what its status says still stands (it was
            // dropped along with the log, and an eviction's job said only "BackoffLimitExceeded").
            logger.LogWarning("job {JobId}: could not read the pod's log ({Error})", jobId, e.Message);
            return text;
        }
    }

    // The pod's own reason (Evicted, with the kubelet's message), then its runner's: how it terminated, or what it still waits
    // on (an image that cannot be pulled, a config error).
    private static string PodState(V1Pod pod)
    {
        var text = "";
        if (!string.IsNullOrWhiteSpace(pod.Status?.Reason))
            text += $"; pod {pod.Status.Reason}{(string.IsNullOrWhiteSpace(pod.Status.Message) ? "" : $": {pod.Status.Message.Trim()}")}";
        var state = pod.Status?.ContainerStatuses?.FirstOrDefault(s => s.Name == JobManifest.RunnerContainer)?.State;
        if (state?.Terminated is { } terminated)
        {
            text += $"; container {terminated.Reason ?? "terminated"} with exit code {terminated.ExitCode}";
            if (!string.IsNullOrWhiteSpace(terminated.Message)) text += $": {terminated.Message.Trim()}";
        }
        else if (state?.Waiting is { Reason: { Length: > 0 } waiting } w)
        {
            text += $"; container never started ({waiting}{(string.IsNullOrWhiteSpace(w.Message) ? "" : $": {w.Message.Trim()}")})";
        }
        return text;
    }

    private static string ResolveNamespace(string configured)
    {
        if (configured.Length > 0) return configured;
        if (File.Exists(ServiceAccountNamespaceFile)) return File.ReadAllText(ServiceAccountNamespaceFile).Trim();
        return "default";
    }
}
