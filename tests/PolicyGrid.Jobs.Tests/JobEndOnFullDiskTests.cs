using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>
/// A local job that ends while the data directory's disk is full: the job's own process cannot store its result, and
/// the server could not record how it ended either, so the job showed "running" for good and nothing was logged. The
/// server now tries again until the end is recorded.
/// </summary>
public sealed class JobEndOnFullDiskTests
{
    [Fact]
    public async Task A_job_that_ends_on_a_full_disk_is_recorded_as_ended_once_space_is_freed()
    {
        using var disk = SmallDisk.Mount(8 << 20);
        var log = new LogCapture();
        await using var server = new GridServer
        {
            DataDirectory = Path.Combine(disk.Path, "data"),
            PythonWorkers = 1,
            TestServices = services => services.AddSingleton<ILoggerProvider>(log),
        };
        var client = server.CreateClient();
        var policy = await server.StorePolicyAsync("batch", LocalJobsTests.Policies);
        var submitted = await client.Post("/jobs/submit/local",
            $$$"""{"name":"t","policy_rule_uri":"{{{policy}}}","policy_rule_parameters":{},"inputs":{"mode":"sleep","seconds":2},"timeout_seconds":60}""");
        submitted.Status.ShouldBe(200, submitted.Message);
        var jobId = submitted.Data!["job_id"]!.GetValue<string>();
        await Until(async () => (await client.Get($"/jobs/{jobId}")).DataStatus == "running", "the job to start");

        disk.Fill();
        await Until(() => Task.FromResult(log.Entries.Any(e => e.Message.StartsWith($"job {jobId}: could not record that it ended", StringComparison.Ordinal))),
            "the server to fail to record the job's end");
        (await client.Get($"/jobs/{jobId}")).DataStatus.ShouldBe("running");

        disk.Free();

        var ended = await client.Get($"/jobs/{jobId}?wait=60");
        ended.DataStatus.ShouldBe("failed", ended.Body?.ToJsonString());
        ended.Data!["error"]!.GetValue<string>().ShouldStartWith("the job ran, but its process could not store the outcome: the server's storage refused the write");
        log.Entries.ShouldContain(e => e.Message == $"job {jobId}: its end is recorded now");
    }

    [Fact]
    public async Task A_job_whose_pid_file_cannot_be_written_runs_and_ends_as_it_would_have()
    {
        // The pid file (for finding the process again after a restart) is written once the process has started. On a full
        // disk that write failed the job with "the job's launcher failed: No space left on device : '<the file's path>'"
        // while its process ran on, unwatched. Here only the jobs directory is full, so the job can store its outcome.
        var data = GridServer.NewDataDirectory();
        using var disk = SmallDisk.Mount(1 << 20);
        Directory.CreateDirectory(data);
        Directory.CreateSymbolicLink(Path.Combine(data, "jobs"), disk.Path);
        var log = new LogCapture();
        await using var server = new GridServer
        {
            DataDirectory = data,
            PythonWorkers = 1,
            TestServices = services => services.AddSingleton<ILoggerProvider>(log),
        };
        try
        {
            var client = server.CreateClient();
            var policy = await server.StorePolicyAsync("batch", LocalJobsTests.Policies);
            disk.Fill();
            var submitted = await client.Post("/jobs/submit/local",
                $$$"""{"name":"t","policy_rule_uri":"{{{policy}}}","policy_rule_parameters":{},"inputs":{"mode":"echo"},"timeout_seconds":60}""");
            submitted.Status.ShouldBe(200, submitted.Message);
            var jobId = submitted.Data!["job_id"]!.GetValue<string>();

            var ended = await client.Get($"/jobs/{jobId}?wait=60");

            ended.DataStatus.ShouldBe("succeeded", ended.Body?.ToJsonString());
            log.Entries.ShouldContain(e => e.Message.StartsWith($"job {jobId}: started process ", StringComparison.Ordinal)
                && e.Message.Contains("but its pid file could not be written (the server's storage is full", StringComparison.Ordinal));
        }
        finally
        {
            try { Directory.Delete(data, recursive: true); } catch (IOException) { }
        }
    }

    [Fact]
    public async Task A_launcher_the_disk_refused_fails_the_job_saying_so_without_the_servers_paths()
    {
        // It failed the job with the exception's own message: "the job's launcher failed: No space left on device : '<path>'".
        await using var server = new GridServer
        {
            PythonWorkers = 1,
            TestServices = services => services.AddSingleton<PolicyGrid.Core.Ports.IJobLauncher>(new RefusedByTheDisk()),
        };
        var client = server.CreateClient();
        var policy = await server.StorePolicyAsync("batch", LocalJobsTests.Policies);
        var submitted = await client.Post("/jobs/submit/local",
            $$$"""{"name":"t","policy_rule_uri":"{{{policy}}}","policy_rule_parameters":{},"inputs":{"mode":"echo"},"timeout_seconds":60}""");
        submitted.Status.ShouldBe(200, submitted.Message);

        var ended = await client.Get($"/jobs/{submitted.Data!["job_id"]!.GetValue<string>()}?wait=60");

        ended.DataStatus.ShouldBe("failed", ended.Body?.ToJsonString());
        var error = ended.Data!["error"]!.GetValue<string>();
        error.ShouldStartWith("the job's launcher failed: the server's storage is full (no space left on device)");
        error.ShouldNotContain("/srv/secret");
    }

    private sealed class RefusedByTheDisk : PolicyGrid.Core.Ports.IJobLauncher
    {
        public Task<PolicyGrid.Core.Ports.JobOutcome> RunAsync(PolicyGrid.Core.Ports.JobLaunch launch, CancellationToken ct) =>
            throw new IOException("No space left on device : '/srv/secret/jobs/x.pid.tmp'", 28);
        public Task<PolicyGrid.Core.Ports.JobOutcome> ReattachAsync(string jobId, CancellationToken ct) => throw new NotSupportedException();
        public Task CancelAsync(string jobId, CancellationToken ct) => Task.CompletedTask;
    }

    // A bounded wait for something the test cannot be told of (a job's process starting, a line in the log).
    private static async Task Until(Func<Task<bool>> condition, string what)
    {
        var until = DateTime.UtcNow.AddSeconds(60);
        while (!await condition())
        {
            if (DateTime.UtcNow > until) throw new TimeoutException($"waited 60 s for {what}");
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }
}
