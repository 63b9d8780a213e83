using Xunit;
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
        var options = ManifestGoldenTests.Options;
        options.Namespace = Ns;
        options.PollInitial = TimeSpan.FromMilliseconds(20);
        options.PollMax = TimeSpan.FromMilliseconds(100);
        launcher = new KubernetesJobLauncher(client, Options.Create(options), NullLogger<KubernetesJobLauncher>.Instance);
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
        await client.BatchV1.CreateNamespacedJobAsync(JobManifest.Build(launch, Ns, "t", ManifestGoldenTests.Options), Ns);
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
