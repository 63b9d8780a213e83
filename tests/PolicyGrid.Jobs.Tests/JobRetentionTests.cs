using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Jobs;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Jobs;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>
/// Ended jobs' records (and a local job's log) are kept for a while and then removed; pending and running jobs never are.
/// They used to be kept for good: a 22-minute soak left 326 records and 325 logs.
/// </summary>
public sealed class JobRetentionTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Directory.CreateTempSubdirectory("pg-job-retention-").FullName;
    private readonly SqliteDocumentStore store;
    private readonly List<string> forgotten = [];

    public JobRetentionTests() => store = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private sealed class RecordingLauncher(List<string> forgotten) : IJobLauncher
    {
        public Task<JobOutcome> RunAsync(JobLaunch launch, CancellationToken ct) => throw new NotSupportedException();
        public Task<JobOutcome> ReattachAsync(string jobId, CancellationToken ct) => throw new NotSupportedException();
        public Task CancelAsync(string jobId, CancellationToken ct) => Task.CompletedTask;
        public Task ForgetAsync(string jobId, CancellationToken ct)
        {
            lock (forgotten) forgotten.Add(jobId);
            return Task.CompletedTask;
        }
    }

    /// <summary>A job created <paramref name="age"/> ago; an ended one ended a second later.</summary>
    private async Task AddAsync(string id, string status, TimeSpan age)
    {
        var created = DateTimeOffset.UtcNow - age;
        var job = new Job
        {
            JobId = id, ExecutorId = "local", PolicyRuleUri = "batch:1.0", Status = status, CreatedAt = Timestamps.Format(created),
            StartedAt = status == JobStatus.Pending ? "" : Timestamps.Format(created),
            FinishedAt = JobStatus.IsFinal(status) ? Timestamps.Format(created.AddSeconds(1)) : "",
        };
        await store.CreateAsync(Collections.Jobs, id, job.ToJson(), Ct);
    }

    private JobRetention Retention(JobsOptions options)
    {
        var services = new ServiceCollection().AddSingleton<IJobLauncher>(new RecordingLauncher(forgotten)).BuildServiceProvider();
        return new JobRetention(store, new JobResultTokens(store), services, Options.Create(options), TimeProvider.System, NullLogger<JobRetention>.Instance);
    }

    private async Task<string[]> KeptAsync() =>
        [.. (await store.QueryAsync(Collections.Jobs, DocumentQuery.All(), Ct)).Select(d => d.Id).Order(StringComparer.Ordinal)];

    [Fact]
    public async Task Ended_jobs_past_their_keep_time_or_beyond_the_newest_go_and_pending_or_running_ones_stay()
    {
        await AddAsync("old-succeeded", JobStatus.Succeeded, TimeSpan.FromDays(8));
        await AddAsync("old-cancelled", JobStatus.Cancelled, TimeSpan.FromDays(9));
        await AddAsync("old-running", JobStatus.Running, TimeSpan.FromDays(8)); // a 24 h job re-attached after a long stop
        await AddAsync("old-pending", JobStatus.Pending, TimeSpan.FromDays(8));
        await AddAsync("ended-0", JobStatus.Failed, TimeSpan.FromMinutes(40));
        await AddAsync("ended-1", JobStatus.TimedOut, TimeSpan.FromMinutes(30));
        await AddAsync("ended-2", JobStatus.Succeeded, TimeSpan.FromMinutes(20));
        await AddAsync("running", JobStatus.Running, TimeSpan.FromMinutes(50));
        var retention = Retention(new JobsOptions { KeepEndedJobsFor = TimeSpan.FromDays(7), MaxEndedJobs = 2 });

        (await retention.PruneAsync(Ct)).ShouldBe(3);

        (await KeptAsync()).ShouldBe(["ended-1", "ended-2", "old-pending", "old-running", "running"]);
        forgotten.Order(StringComparer.Ordinal).ShouldBe(["ended-0", "old-cancelled", "old-succeeded"]);
        (await retention.PruneAsync(Ct)).ShouldBe(0);
    }

    [Fact]
    public async Task Zero_keeps_ended_jobs_for_ever()
    {
        await AddAsync("ancient", JobStatus.Succeeded, TimeSpan.FromDays(3650));
        await AddAsync("recent", JobStatus.Failed, TimeSpan.FromMinutes(1));

        (await Retention(new JobsOptions { KeepEndedJobsFor = TimeSpan.Zero, MaxEndedJobs = 0 }).PruneAsync(Ct)).ShouldBe(0);

        (await KeptAsync()).ShouldBe(["ancient", "recent"]);
    }

    [Fact]
    public async Task More_ended_jobs_than_a_query_page_beyond_the_limit_all_go()
    {
        for (var i = 0; i < DocumentQuery.MaxLimit + 5; i++) await AddAsync($"e-{i:D4}", JobStatus.Succeeded, TimeSpan.FromSeconds(2000 - i));

        (await Retention(new JobsOptions { MaxEndedJobs = 3 }).PruneAsync(Ct)).ShouldBe(DocumentQuery.MaxLimit + 2);

        (await KeptAsync()).ShouldBe([$"e-{DocumentQuery.MaxLimit + 2:D4}", $"e-{DocumentQuery.MaxLimit + 3:D4}", $"e-{DocumentQuery.MaxLimit + 4:D4}"]);
    }

    [Fact]
    public async Task More_ended_jobs_than_a_query_page_past_their_keep_time_all_go()
    {
        for (var i = 0; i < DocumentQuery.MaxLimit + 5; i++) await AddAsync($"old-{i:D4}", JobStatus.Succeeded, TimeSpan.FromDays(8) + TimeSpan.FromSeconds(i));
        await AddAsync("recent", JobStatus.Succeeded, TimeSpan.FromDays(6));

        (await Retention(new JobsOptions { KeepEndedJobsFor = TimeSpan.FromDays(7), MaxEndedJobs = 0 }).PruneAsync(Ct)).ShouldBe(DocumentQuery.MaxLimit + 5);

        (await KeptAsync()).ShouldBe(["recent"]);
    }

    [Theory]
    [InlineData("KeepEndedJobsFor", "-1.00:00:00", "zero (keep for ever) or more")]
    [InlineData("MaxEndedJobs", "-1", "0 (no limit) or more")]
    [InlineData("PruneInterval", "00:00:00", "greater than zero")]
    // A launcher name mistyped ran every job locally on serve, and on an executor app left it with no launcher at all.
    [InlineData("Launcher", "kubernets", "\"local\" (OS processes) or \"kubernetes\" (Kubernetes Jobs)")]
    public void A_job_setting_out_of_range_is_refused_naming_it(string setting, string value, string rule)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [$"PolicyGrid:Jobs:{setting}"] = value }).Build();
        var services = new ServiceCollection();
        services.AddJobsApi(configuration);
        using var provider = services.BuildServiceProvider();

        var error = Should.Throw<OptionsValidationException>(() => provider.GetRequiredService<IOptions<JobsOptions>>().Value);

        error.Failures.ShouldHaveSingleItem().ShouldStartWith($"PolicyGrid:Jobs:{setting} is ");
        error.Message.ShouldContain($"it must be {rule}");
    }

    [Theory]
    [InlineData("7.00:00:00", 10000, ": it was never submitted here, or it ended more than 7 days ago or is not among the 10000 that ended last and was removed by job retention")]
    [InlineData("01:00:00", 0, ": it was never submitted here, or it ended more than 1 hour ago and was removed by job retention")]
    [InlineData("00:00:30", 0, "ended more than 30 seconds ago")]
    [InlineData("00:00:00", 0, "")]
    public void A_missing_jobs_answer_names_the_retention_limits_in_force(string keep, int max, string expected)
    {
        var explained = JobRetention.Explain(new JobsOptions { KeepEndedJobsFor = TimeSpan.Parse(keep, System.Globalization.CultureInfo.InvariantCulture), MaxEndedJobs = max });

        if (expected.Length == 0) explained.ShouldBeEmpty();
        else explained.ShouldContain(expected);
    }

    [Fact]
    public void The_local_launcher_removes_a_jobs_log_and_a_missing_one_is_no_error()
    {
        var launcher = new LocalJobLauncher(new LocalJobOptions { DataDirectory = dir }, new ConfigurationBuilder().Build(), NullLogger<LocalJobLauncher>.Instance);
        Directory.CreateDirectory(Path.Combine(dir, "jobs"));
        File.WriteAllText(launcher.LogFile("j1"), "printed");

        launcher.ForgetAsync("j1", Ct).IsCompletedSuccessfully.ShouldBeTrue();
        launcher.ForgetAsync("never-ran", Ct).IsCompletedSuccessfully.ShouldBeTrue();

        File.Exists(launcher.LogFile("j1")).ShouldBeFalse();
    }
}

/// <summary>Retention on a real server: real job processes and their logs, and what a GET of a removed job answers.</summary>
public sealed class JobRetentionServerTests : IAsyncLifetime
{
    private readonly GridServer server = new() { PythonWorkers = 1, Settings = { ["PolicyGrid:Jobs:MaxEndedJobs"] = "1" } };
    private HttpClient client = null!;
    private string policy = "";

    public async ValueTask InitializeAsync()
    {
        client = server.CreateClient();
        policy = await server.StorePolicyAsync("batch", LocalJobsTests.Policies);
    }

    public async ValueTask DisposeAsync() => await server.DisposeAsync();

    private async Task<string> SubmitAsync(string inputs)
    {
        var answer = await client.Post("/jobs/submit/local", $$"""{"name":"t","policy_rule_uri":"{{policy}}","inputs":{{inputs}},"timeout_seconds":120}""");
        answer.Status.ShouldBe(200, answer.Message);
        return answer.Data!["job_id"]!.GetValue<string>();
    }

    private async Task<string> EndedAsync(string id)
    {
        var answer = await client.Get($"/jobs/{id}?wait=120");
        answer.Status.ShouldBe(200);
        return answer.DataStatus!;
    }

    private string LogOf(string id) => server.Service<LocalJobLauncher>().LogFile(id);

    [Fact]
    public async Task An_ended_job_beyond_the_limit_goes_with_its_log_while_a_running_one_stays_and_its_get_says_why_it_is_gone()
    {
        var first = await SubmitAsync("""{"mode":"echo"}""");
        (await EndedAsync(first)).ShouldBe("succeeded");
        var second = await SubmitAsync("""{"mode":"raise"}""");
        (await EndedAsync(second)).ShouldBe("failed");
        var running = await SubmitAsync("""{"mode":"sleep","seconds":60}""");
        File.Exists(LogOf(first)).ShouldBeTrue();

        (await server.Service<JobRetention>().PruneAsync(TestContext.Current.CancellationToken)).ShouldBe(1);

        File.Exists(LogOf(first)).ShouldBeFalse();
        File.Exists(LogOf(second)).ShouldBeTrue();
        var gone = await client.Get($"/jobs/{first}");
        gone.Status.ShouldBe(404);
        gone.Message.ShouldContain($"no job '{first}'");
        gone.Message.ShouldContain("is not among the 1 that ended last and was removed by job retention");
        (await client.Get($"/jobs/{second}")).DataStatus.ShouldBe("failed");
        (await client.Get($"/jobs/{running}")).DataStatus.ShouldBeOneOf("pending", "running");

        (await client.Delete($"/jobs/{running}")).DataStatus.ShouldBe("cancelled");
    }
}
