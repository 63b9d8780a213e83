using Xunit;
using System.Text.Json.Nodes;
using k8s;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Kubernetes.Tests;

/// <summary>The launcher through the real KubernetesClient against the loopback API server; the test plays the Job controller.</summary>
public class KubernetesJobLauncherTests : IAsyncLifetime
{
    private const string Ns = "jobs-ns";
    private FakeKubernetesApi api = null!;
    private KubernetesJobLauncher launcher = null!;
    private IKubernetes client = null!;

    public async ValueTask InitializeAsync()
    {
        api = await FakeKubernetesApi.StartAsync();
        client = new k8s.Kubernetes(new KubernetesClientConfiguration { Host = api.Url, AccessToken = "node-sa-token" });
        launcher = new KubernetesJobLauncher(client, Options.Create(LauncherOptions()), NullLogger<KubernetesJobLauncher>.Instance);
    }

    // The sample options in this test's namespace, polling fast.
    private static KubernetesJobOptions LauncherOptions()
    {
        var options = ManifestGoldenTests.Options;
        options.Namespace = Ns;
        options.PollInitial = TimeSpan.FromMilliseconds(20);
        options.PollMax = TimeSpan.FromMilliseconds(100);
        return options;
    }

    public async ValueTask DisposeAsync()
    {
        client.Dispose();
        await api.DisposeAsync();
    }

    private static string JobPath(string id) => $"/apis/batch/v1/namespaces/{Ns}/jobs/{KubernetesNames.JobName(id)}";

    [Fact]
    public async Task A_completed_job_ends_as_exited_after_creating_the_manifest_with_the_node_account()
    {
        var launch = ManifestGoldenTests.SampleLaunch();
        var run = launcher.RunAsync(launch, CancellationToken.None);
        await api.WhenCreated(JobPath(launch.JobId));

        var created = api.Requests.First(r => r.Method == "POST");
        created.Authorization.ShouldBe("Bearer node-sa-token");
        created.Body!["spec"]!["backoffLimit"]!.GetValue<int>().ShouldBe(0);
        created.Body["spec"]!["template"]!["spec"]!["containers"]![0]!["image"]!.GetValue<string>().ShouldBe("registry.example/policygrid/job-runner:1.0");
        run.IsCompleted.ShouldBeFalse();

        api.SetJobCondition(Ns, KubernetesNames.JobName(launch.JobId), "Complete");
        (await run.WaitAsync(TimeSpan.FromSeconds(20))).End.ShouldBe(JobEnd.Exited);
    }

    [Theory]
    [InlineData(120_000, false)]
    [InlineData(140_000, true)]
    public async Task A_job_whose_spec_is_past_what_linux_takes_in_one_environment_variable_fails_at_once_and_no_job_is_created(int inputBytes, bool refused)
    {
        var id = $"big-{inputBytes}";
        var launch = ManifestGoldenTests.SampleLaunch(id) with { Inputs = new JsonObject { ["blob"] = new string('a', inputBytes) } };
        var run = launcher.RunAsync(launch, CancellationToken.None);
        if (!refused)
        {
            await api.WhenCreated(JobPath(id));
            await launcher.CancelAsync(id, CancellationToken.None);
            (await run.WaitAsync(TimeSpan.FromSeconds(20))).End.ShouldBe(JobEnd.Cancelled);
            return;
        }
        var outcome = await run.WaitAsync(TimeSpan.FromSeconds(20));
        outcome.End.ShouldBe(JobEnd.Failed);
        outcome.Error.ShouldContain("too large to run as a Kubernetes Job");
        outcome.Error.ShouldContain("POLICYGRID_JOB_SPEC");
        api.Requests.ShouldNotContain(r => r.Method == "POST");
    }

    [Fact]
    public async Task A_job_past_its_deadline_ends_timed_out()
    {
        var launch = ManifestGoldenTests.SampleLaunch("deadline-1");
        var run = launcher.RunAsync(launch, CancellationToken.None);
        await api.WhenCreated(JobPath(launch.JobId));
        api.SetJobCondition(Ns, KubernetesNames.JobName(launch.JobId), "Failed", "DeadlineExceeded", "Job was active longer than specified deadline");

        var outcome = await run.WaitAsync(TimeSpan.FromSeconds(20));
        outcome.End.ShouldBe(JobEnd.TimedOut);
        outcome.Error.ShouldContain("deadline");
    }

    [Fact]
    public async Task A_failed_job_reports_the_pods_exit_and_log_tail()
    {
        var launch = ManifestGoldenTests.SampleLaunch("crash-1");
        var run = launcher.RunAsync(launch, CancellationToken.None);
        await api.WhenCreated(JobPath(launch.JobId));
        api.AddPod(Ns, "pg-job-crash-1-abcde", new() { [JobManifest.JobIdLabel] = "crash-1" }, "OOMKilled", 137, "loading policy\nKilled");
        api.SetJobCondition(Ns, KubernetesNames.JobName(launch.JobId), "Failed", "BackoffLimitExceeded");

        var outcome = await run.WaitAsync(TimeSpan.FromSeconds(20));
        outcome.End.ShouldBe(JobEnd.Failed);
        outcome.Error.ShouldContain("BackoffLimitExceeded");
        outcome.Error.ShouldContain("OOMKilled with exit code 137");
        outcome.Error.ShouldContain("loading policy");
        api.Requests.ShouldContain(r => r.Path.EndsWith("/pods/pg-job-crash-1-abcde/log", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_evicted_pod_whose_log_is_gone_fails_the_job_saying_it_was_evicted_and_why()
    {
        var outcome = await EndedWithPodAsync("evicted-1", "BackoffLimitExceeded",
            new JsonObject { ["terminated"] = new JsonObject { ["reason"] = "ContainerStatusUnknown", ["exitCode"] = 137 } },
            podReason: "Evicted", podMessage: "The node was low on resource: memory. ");

        outcome.End.ShouldBe(JobEnd.Failed);
        outcome.Error.ShouldBe("the Kubernetes Job failed (BackoffLimitExceeded); pod Evicted: The node was low on resource: memory.; container ContainerStatusUnknown with exit code 137");
    }

    [Fact]
    public async Task A_pod_whose_runner_never_started_says_what_it_waited_on()
    {
        // A pull failing for less than StartFailureGrace (60 s here) may pass: the job is left to its deadline.
        var outcome = await EndedWithPodAsync("pull-1", "DeadlineExceeded",
            new JsonObject { ["waiting"] = new JsonObject { ["reason"] = "ImagePullBackOff", ["message"] = "Back-off pulling image \"x\"" } });

        outcome.End.ShouldBe(JobEnd.TimedOut);
        outcome.Error.ShouldEndWith("; container never started (ImagePullBackOff: Back-off pulling image \"x\")");
    }

    [Theory]
    [InlineData("InvalidImageName", "couldn't parse image name \"Registry/X:\": invalid reference format")]
    [InlineData("CreateContainerConfigError", "secret \"x\" not found")]
    public async Task A_runner_that_can_never_start_fails_the_job_at_once_with_the_reason_and_its_job_is_deleted(string reason, string message)
    {
        var outcome = await StuckAsync("never-1", reason, message, grace: TimeSpan.FromHours(1));

        outcome.End.ShouldBe(JobEnd.Failed);
        outcome.Error.ShouldBe($"the job's container could not start: {reason}: {message}; the Kubernetes Job was deleted");
        api.Get(JobPath("never-1")).ShouldBeNull();
    }

    [Fact]
    public async Task An_image_pull_failing_past_the_grace_fails_the_job_with_the_reason_and_its_job_is_deleted()
    {
        var outcome = await StuckAsync("pull-2", "ImagePullBackOff", "Back-off pulling image \"registry.example/none:1\"", grace: TimeSpan.FromMilliseconds(300));

        outcome.End.ShouldBe(JobEnd.Failed);
        outcome.Error.ShouldStartWith("the job's container could not start: ImagePullBackOff: Back-off pulling image \"registry.example/none:1\" (for ");
        outcome.Error.ShouldContain("StartFailureGrace");
        outcome.Error.ShouldEndWith("; the Kubernetes Job was deleted");
        api.Get(JobPath("pull-2")).ShouldBeNull();
    }

    // A job whose runner waits on `reason` for good (the Job itself never ends): how the launcher ends it.
    private async Task<JobOutcome> StuckAsync(string id, string reason, string message, TimeSpan grace)
    {
        var options = LauncherOptions();
        options.StartFailureGrace = grace;
        var stuck = new KubernetesJobLauncher(client, Options.Create(options), NullLogger<KubernetesJobLauncher>.Instance);
        var run = stuck.RunAsync(ManifestGoldenTests.SampleLaunch(id), CancellationToken.None);
        await api.WhenCreated(JobPath(id));
        api.AddPod(Ns, $"pg-job-{id}-abcde", new() { [JobManifest.JobIdLabel] = id },
            new JsonObject { ["waiting"] = new JsonObject { ["reason"] = reason, ["message"] = message } }, log: null);
        return await run.WaitAsync(TimeSpan.FromSeconds(20));
    }

    // A job whose pod has its runner in `state` (and no log unless given), and whose Job then fails for `jobReason`: how it ended.
    private async Task<JobOutcome> EndedWithPodAsync(string id, string jobReason, JsonObject state, string? log = null, string podReason = "", string podMessage = "")
    {
        var launch = ManifestGoldenTests.SampleLaunch(id);
        var run = launcher.RunAsync(launch, CancellationToken.None);
        await api.WhenCreated(JobPath(id));
        api.AddPod(Ns, $"pg-job-{id}-abcde", new() { [JobManifest.JobIdLabel] = id }, state, log, podReason, podMessage);
        api.SetJobCondition(Ns, KubernetesNames.JobName(id), "Failed", jobReason);
        return await run.WaitAsync(TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task Cancelling_deletes_the_job_with_its_pods_and_ends_the_run()
    {
        var launch = ManifestGoldenTests.SampleLaunch("cancel-1");
        var run = launcher.RunAsync(launch, CancellationToken.None);
        await api.WhenCreated(JobPath(launch.JobId));

        await launcher.CancelAsync(launch.JobId, CancellationToken.None);

        (await run.WaitAsync(TimeSpan.FromSeconds(20))).End.ShouldBe(JobEnd.Cancelled);
        api.Get(JobPath(launch.JobId)).ShouldBeNull();
        api.Requests.ShouldContain(r => r.Method == "DELETE" && r.Path == JobPath(launch.JobId));
        // Cancelling again (or a job already gone) is not an error.
        await launcher.CancelAsync(launch.JobId, CancellationToken.None);
    }

    [Fact]
    public async Task Every_call_the_launcher_makes_is_one_the_nodes_role_allows()
    {
        // A real API server checks each call against the node's Role; this fake does not, so the test does: the status
        // subresource (jobs/status) is not covered by a rule for "jobs", and a launcher that read it got a 403 for every job.
        var failed = await EndedWithPodAsync("rbac-1", "BackoffLimitExceeded",
            new JsonObject { ["terminated"] = new JsonObject { ["reason"] = "Error", ["exitCode"] = 1 } }, log: "boom");
        failed.Error.ShouldContain("boom"); // its pod's log was read too
        var cancelled = ManifestGoldenTests.SampleLaunch("rbac-2");
        var second = launcher.RunAsync(cancelled, CancellationToken.None);
        await api.WhenCreated(JobPath(cancelled.JobId));
        await launcher.CancelAsync(cancelled.JobId, CancellationToken.None);
        (await second.WaitAsync(TimeSpan.FromSeconds(20))).End.ShouldBe(JobEnd.Cancelled);

        var role = ExecutorNodeManifests.Build("node", Ns, new ExecutorNodeOptions()).Role;
        foreach (var request in api.Requests)
        {
            var (group, resource, verb) = RbacAttributes(request);
            role.Rules.ShouldContain(r => r.ApiGroups.Contains(group) && r.Resources.Contains(resource) && r.Verbs.Contains(verb),
                $"{request.Method} {request.Path} needs '{verb}' on '{resource}' in API group '{group}', which the node's Role does not grant");
        }
    }

    // What RBAC checks a namespaced call against: /api/v1/namespaces/{ns}/{resource}[/{name}[/{subresource}]] (core group)
    // or /apis/{group}/{version}/namespaces/...
    private static (string Group, string Resource, string Verb) RbacAttributes(RecordedRequest request)
    {
        var parts = request.Path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var group = parts[0] == "api" ? "" : parts[1];
        var at = Array.IndexOf(parts, "namespaces") + 2;
        var resource = parts[at] + (parts.Length > at + 2 ? "/" + parts[at + 2] : "");
        var named = parts.Length > at + 1;
        var verb = request.Method switch
        {
            "POST" => "create",
            "DELETE" => "delete",
            "PUT" => "update",
            _ => named ? "get" : "list",
        };
        return (group, resource, verb);
    }

    [Fact]
    public async Task A_job_whose_status_the_api_server_refuses_to_show_fails_saying_so_and_its_job_is_deleted()
    {
        var launch = ManifestGoldenTests.SampleLaunch("forbidden-1");
        api.FailNext("GET", KubernetesNames.JobName("forbidden-1"), 403);
        var outcome = await launcher.RunAsync(launch, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20));

        outcome.End.ShouldBe(JobEnd.Failed);
        outcome.Error.ShouldContain($"the Kubernetes API answered 403 to read Job {Ns}/{KubernetesNames.JobName("forbidden-1")}");
        outcome.Error.ShouldContain("the Kubernetes Job was deleted");
        api.Get(JobPath(launch.JobId)).ShouldBeNull();
    }

    [Fact]
    public async Task Reattaching_to_a_job_that_is_gone_fails_with_the_reason()
    {
        var outcome = await launcher.ReattachAsync("vanished", CancellationToken.None);
        outcome.End.ShouldBe(JobEnd.Failed);
        outcome.Error.ShouldContain("no longer exists");
    }

    [Fact]
    public async Task Reattaching_follows_a_job_created_before_a_restart()
    {
        var launch = ManifestGoldenTests.SampleLaunch("restart-1");
        await client.BatchV1.CreateNamespacedJobAsync(JobManifest.Build(launch, Ns, "t", ManifestGoldenTests.Options, ManifestGoldenTests.CreatedAt), Ns);
        var run = launcher.ReattachAsync(launch.JobId, CancellationToken.None);
        api.SetJobCondition(Ns, KubernetesNames.JobName(launch.JobId), "Complete");
        (await run.WaitAsync(TimeSpan.FromSeconds(20))).End.ShouldBe(JobEnd.Exited);
    }

    [Fact]
    public async Task A_transient_api_failure_while_following_is_retried()
    {
        var launch = ManifestGoldenTests.SampleLaunch("flaky-1");
        api.FailNext("GET", KubernetesNames.JobName("flaky-1"), 503);
        var run = launcher.RunAsync(launch, CancellationToken.None);
        await api.WhenCreated(JobPath(launch.JobId));
        api.SetJobCondition(Ns, KubernetesNames.JobName(launch.JobId), "Complete");
        (await run.WaitAsync(TimeSpan.FromSeconds(20))).End.ShouldBe(JobEnd.Exited);
    }
}
