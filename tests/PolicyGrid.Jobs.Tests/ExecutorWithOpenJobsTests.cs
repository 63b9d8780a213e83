using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>
/// Deleting an executor while jobs run on it: a job's launcher is found through its executor, so once the executor was
/// gone a cancel could not stop the job's process or Kubernetes Job (it ran on), and a restart recorded it failed.
/// </summary>
public sealed class ExecutorWithOpenJobsTests : IAsyncLifetime
{
    private readonly HeldJobs launcher = new();
    private readonly GridServer server;
    private HttpClient client = null!;
    private string policy = "";

    public ExecutorWithOpenJobsTests() =>
        server = new GridServer { PythonWorkers = 1, TestServices = services => services.AddSingleton<IJobLauncher>(launcher) };

    public async ValueTask InitializeAsync()
    {
        client = server.CreateClient();
        policy = await server.StorePolicyAsync("batch", GridServer.EchoPolicy);
        await server.StoreExecutorAsync("batch", "inproc://local");
    }

    public async ValueTask DisposeAsync() => await server.DisposeAsync();

    private async Task<string> SubmitAsync()
    {
        var submitted = await client.Post("/jobs/submit/batch", $$$"""{"name":"t","policy_rule_uri":"{{{policy}}}","inputs":{},"timeout_seconds":600}""");
        submitted.Status.ShouldBe(200, submitted.Message);
        var id = submitted.Data!["job_id"]!.GetValue<string>();
        await launcher.Started(id).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        return id;
    }

    [Fact]
    public async Task Deleting_an_executor_with_open_jobs_is_a_409_naming_them_and_how_to_proceed()
    {
        var jobs = new List<string>();
        for (var i = 0; i < 6; i++) jobs.Add(await SubmitAsync());

        var refused = await client.Delete("/executor/batch");

        refused.Status.ShouldBe(409);
        refused.Code.ShouldBe("conflict");
        refused.Message.ShouldContain("6 open job(s)");
        refused.Message.ShouldContain(jobs[0]);
        refused.Message.ShouldContain("and 1 more");
        refused.Message.ShouldContain("DELETE /jobs/{job_id}");
        refused.Message.ShouldContain("?force=true");
        (await client.Get("/executor/batch")).Status.ShouldBe(200);
        foreach (var id in jobs) (await client.Get($"/jobs/{id}")).DataStatus.ShouldBe("running");
        launcher.Cancelled.ShouldBeEmpty();
    }

    [Fact]
    public async Task Deleting_it_with_force_cancels_its_open_jobs_and_stops_them_first()
    {
        var id = await SubmitAsync();

        var deleted = await client.Delete("/executor/batch?force=true");

        deleted.Status.ShouldBe(200, deleted.Message);
        Warnings(deleted).ShouldHaveSingleItem().ShouldContain(id);
        (await client.Get("/executor/batch")).Status.ShouldBe(404);
        launcher.Cancelled.ShouldContain(id);
        var job = await client.Get($"/jobs/{id}");
        job.DataStatus.ShouldBe("cancelled");
        job.Data!["error"]!.GetValue<string>().ShouldContain("executor 'batch' was deleted");
        var log = await client.Post("/decisions/query", $$"""{"context_key":"job:{{id}}","error_code":"cancelled"}""");
        log.Data!.AsArray().ShouldHaveSingleItem();
    }

    [Fact]
    public async Task An_executor_whose_jobs_all_ended_is_deleted_and_a_bad_force_is_a_400()
    {
        var id = await SubmitAsync();
        (await client.Delete($"/jobs/{id}")).DataStatus.ShouldBe("cancelled");

        var bad = await client.Delete("/executor/batch?force=yes");
        bad.Status.ShouldBe(400);
        bad.Message.ShouldContain("force");

        var deleted = await client.Delete("/executor/batch");
        deleted.Status.ShouldBe(200, deleted.Message);
        Warnings(deleted).ShouldBeEmpty();
    }

    private static List<string> Warnings(Answer answer) =>
        [.. (answer.Body?["warnings"] as JsonArray ?? []).Select(w => w!.GetValue<string>())];

    /// <summary>A launcher whose jobs run until they are cancelled.</summary>
    private sealed class HeldJobs : IJobLauncher
    {
        private readonly ConcurrentDictionary<string, TaskCompletionSource> started = new();
        private readonly ConcurrentDictionary<string, TaskCompletionSource> stops = new();
        public ConcurrentBag<string> Cancelled { get; } = [];

        public Task Started(string jobId) => Signal(started, jobId).Task;

        public async Task<JobOutcome> RunAsync(JobLaunch launch, CancellationToken ct)
        {
            Signal(started, launch.JobId).TrySetResult();
            await Signal(stops, launch.JobId).Task.WaitAsync(ct);
            return JobOutcome.Cancelled("cancelled");
        }

        public Task<JobOutcome> ReattachAsync(string jobId, CancellationToken ct) => throw new NotSupportedException();

        public Task CancelAsync(string jobId, CancellationToken ct)
        {
            Cancelled.Add(jobId);
            Signal(stops, jobId).TrySetResult();
            return Task.CompletedTask;
        }

        private static TaskCompletionSource Signal(ConcurrentDictionary<string, TaskCompletionSource> signals, string jobId) =>
            signals.GetOrAdd(jobId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
    }
}
