using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>
/// Local jobs end to end: the embedded server, a real <c>policygrid job-run</c> process per job, the
/// real worker pool and SQLite. Each test waits with the API's own long-poll, never by sleeping.
/// </summary>
public sealed class LocalJobsTests : IAsyncLifetime
{
    public const string Policies = """
        import os, time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.parameters = parameters

            def eval(self, parameters, input_data, context):
                mode = input_data.get("mode", "echo")
                if mode == "raise":
                    raise ValueError("inputs were not acceptable")
                if mode == "sleep":
                    time.sleep(input_data.get("seconds", 30))
                if mode == "exit":
                    os._exit(3)
                return {"echo": input_data, "factor": parameters.get("factor", 1)}
        """;

    private readonly GridServer server = new() { PythonWorkers = 1 };
    private HttpClient client = null!;
    private string policy = "";

    public async ValueTask InitializeAsync()
    {
        client = server.CreateClient();
        policy = await server.StorePolicyAsync("batch", Policies);
    }

    public async ValueTask DisposeAsync() => await server.DisposeAsync();

    private async Task<JsonNode> SubmitAsync(HttpClient http, string inputs, double? timeout = null)
    {
        var timeoutField = timeout is null ? "" : $",\"timeout_seconds\":{timeout.Value.ToString(CultureInfo.InvariantCulture)}";
        var answer = await http.Post("/jobs/submit/local", $$$"""{"name":"t","policy_rule_uri":"{{{policy}}}","policy_rule_parameters":{"factor":3},"inputs":{{{inputs}}}{{{timeoutField}}}}""");
        answer.Status.ShouldBe(200, answer.Message);
        answer.DataStatus.ShouldBe("pending");
        answer.Data!["executor_id"]!.GetValue<string>().ShouldBe("local");
        return answer.Data!;
    }

    private static async Task<JsonNode> WaitAsync(HttpClient http, string jobId)
    {
        var answer = await http.Get($"/jobs/{jobId}?wait=120");
        answer.Status.ShouldBe(200);
        return answer.Data!;
    }

    private static string Id(JsonNode job) => job["job_id"]!.GetValue<string>();

    [Fact]
    public async Task A_job_runs_once_in_its_own_process_and_its_result_is_recorded()
    {
        var job = await SubmitAsync(client, """{"mode":"echo","ip":"10.0.0.1"}""");
        var done = await WaitAsync(client, Id(job));

        done["status"]!.GetValue<string>().ShouldBe("succeeded", done["error"]?.GetValue<string>());
        done["result"]!["echo"]!["ip"]!.GetValue<string>().ShouldBe("10.0.0.1");
        done["result"]!["factor"]!.GetValue<int>().ShouldBe(3);
        done["error"]!.GetValue<string>().ShouldBe("");
        string.CompareOrdinal(done["started_at"]!.GetValue<string>(), done["finished_at"]!.GetValue<string>()).ShouldBeLessThanOrEqualTo(0);
        string.CompareOrdinal(done["created_at"]!.GetValue<string>(), done["started_at"]!.GetValue<string>()).ShouldBeLessThanOrEqualTo(0);
    }

    [Fact]
    public async Task A_policy_that_raises_fails_the_job_with_its_message()
    {
        var done = await WaitAsync(client, Id(await SubmitAsync(client, """{"mode":"raise"}""")));
        done["status"]!.GetValue<string>().ShouldBe("failed");
        done["error"]!.GetValue<string>().ShouldContain("policy_error");
        done["error"]!.GetValue<string>().ShouldContain("inputs were not acceptable");
    }

    [Fact]
    public async Task A_job_past_its_timeout_ends_timed_out()
    {
        var done = await WaitAsync(client, Id(await SubmitAsync(client, """{"mode":"sleep","seconds":60}""", timeout: 1)));
        done["status"]!.GetValue<string>().ShouldBe("timed_out");
        done["error"]!.GetValue<string>().ShouldNotBeEmpty();
    }

    [Fact]
    public async Task A_policy_whose_worker_dies_fails_the_job_as_crashed()
    {
        var done = await WaitAsync(client, Id(await SubmitAsync(client, """{"mode":"exit"}""")));
        done["status"]!.GetValue<string>().ShouldBe("failed");
        done["error"]!.GetValue<string>().ShouldContain("policy_crashed");
    }

    [Fact]
    public async Task Cancelling_a_running_job_stops_its_process()
    {
        var id = Id(await SubmitAsync(client, """{"mode":"sleep","seconds":60}""", timeout: 120));
        var process = await JobProcessAsync(id);

        var cancelled = await client.Delete($"/jobs/{id}");
        cancelled.DataStatus.ShouldBe("cancelled");
        await process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
        (await WaitAsync(client, id))["status"]!.GetValue<string>().ShouldBe("cancelled");
    }

    [Fact]
    public async Task Cancelling_a_running_job_on_a_draining_executor_stops_its_process()
    {
        // Draining refuses new work; the executor's running jobs are still its own to stop. The cancel looked the executor
        // up as for a new job, was refused, and left the process running with its record saying cancelled.
        var id = Id(await SubmitAsync(client, """{"mode":"sleep","seconds":60}""", timeout: 120));
        var process = await JobProcessAsync(id);
        await RunningPolicyAsync(process);
        (await client.Put("/executor/local", """{"$set":{"executor_status":"draining"}}""")).Status.ShouldBe(200);

        (await client.Delete($"/jobs/{id}")).DataStatus.ShouldBe("cancelled");
        await process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_cancelled_job_leaves_nothing_of_its_process_in_the_temp_directory()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = Id(await SubmitAsync(client, """{"mode":"sleep","seconds":60}""", timeout: 120));
        var process = await JobProcessAsync(id);
        var temp = await RunningPolicyAsync(process);
        var made = Directory.GetFileSystemEntries(temp)
            .Where(e => Path.GetFileName(e).Contains($"-{process.Id}-", StringComparison.Ordinal) || Path.GetFileName(e).StartsWith("policygrid-", StringComparison.Ordinal))
            .ToList();
        made.ShouldContain(e => Path.GetFileName(e).Contains($"-{process.Id}-", StringComparison.Ordinal));

        (await client.Delete($"/jobs/{id}")).DataStatus.ShouldBe("cancelled");
        await process.WaitForExitAsync(ct).WaitAsync(TimeSpan.FromSeconds(20), ct);
        (await WaitAsync(client, id))["status"]!.GetValue<string>().ShouldBe("cancelled");

        // The process is killed, so it cleans up nothing itself: its scratch directory, its pool's directory and the
        // runtime's pipes stayed in the server's temp dir for good, five entries per cancelled or timed-out job. The
        // record says cancelled at once; what the process left goes once the server has seen it end.
        var deadline = DateTime.UtcNow.AddSeconds(20);
        foreach (var entry in made) await GoneAsync(entry, deadline);
        made.Where(e => Path.Exists(e)).ShouldBeEmpty();
    }

    private static async Task GoneAsync(string path, DateTime deadline)
    {
        var parent = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(parent)) return;
        using var watcher = new FileSystemWatcher(parent) { EnableRaisingEvents = true };
        var gone = new TaskCompletionSource();
        watcher.Deleted += (_, e) => { if (e.FullPath == path) gone.TrySetResult(); };
        if (!Path.Exists(path)) return;
        var left = deadline - DateTime.UtcNow;
        if (left <= TimeSpan.Zero) return;
        try { await gone.Task.WaitAsync(left, TestContext.Current.CancellationToken); }
        catch (TimeoutException) { }
    }

    private static string TempDirectoryOf(Process process)
    {
        var environment = File.ReadAllText($"/proc/{process.Id}/environ").Split('\0');
        var tmp = environment.FirstOrDefault(v => v.StartsWith("TMPDIR=", StringComparison.Ordinal))?["TMPDIR=".Length..];
        return string.IsNullOrEmpty(tmp) ? "/tmp" : tmp;
    }

    [Fact]
    public async Task A_job_process_killed_from_outside_fails_with_the_signal()
    {
        var id = Id(await SubmitAsync(client, """{"mode":"sleep","seconds":60}""", timeout: 120));
        var process = await JobProcessAsync(id);
        process.Kill();

        var done = await WaitAsync(client, id);
        done["status"]!.GetValue<string>().ShouldBe("failed");
        done["error"]!.GetValue<string>().ShouldContain("signal 9");
    }

    [Fact]
    public async Task A_job_still_running_when_the_server_restarts_is_reattached_and_its_result_kept()
    {
        var id = Id(await SubmitAsync(client, """{"mode":"sleep","seconds":3}""", timeout: 60));
        await JobProcessAsync(id);
        await server.ExitAsync();

        await using var restarted = server.Restart();
        var done = await WaitAsync(restarted.CreateClient(), id);
        done["status"]!.GetValue<string>().ShouldBe("succeeded", done["error"]?.GetValue<string>());
        done["result"]!["echo"]!["seconds"]!.GetValue<int>().ShouldBe(3);
    }

    [Fact]
    public async Task A_job_running_on_a_draining_executor_when_the_server_restarts_is_reattached()
    {
        // An operator drains an executor before maintenance: the restart recorded its running jobs failed ("the job's
        // executor cannot be reached: executor 'local' is draining") while their processes ran on.
        var id = Id(await SubmitAsync(client, """{"mode":"sleep","seconds":3}""", timeout: 60));
        await JobProcessAsync(id);
        (await client.Put("/executor/local", """{"$set":{"executor_status":"draining"}}""")).Status.ShouldBe(200);
        await server.ExitAsync();

        await using var restarted = server.Restart();
        var done = await WaitAsync(restarted.CreateClient(), id);
        done["status"]!.GetValue<string>().ShouldBe("succeeded", done["error"]?.GetValue<string>());
    }

    [Fact]
    public async Task A_job_that_ends_while_no_server_watches_it_leaves_no_pid_file()
    {
        // The server removed a job's pid file when it saw the process end; a job that ended while the server was down
        // (killed, or stopped) left its file in jobs/ for good: one more per job each crash or restart cut short.
        var id = Id(await SubmitAsync(client, """{"mode":"sleep","seconds":1}""", timeout: 60));
        var process = await JobProcessAsync(id);
        var pidFile = Path.Combine(server.DataDirectory, "jobs", $"{id}.pid");
        File.Exists(pidFile).ShouldBeTrue();
        await server.ExitAsync();

        await process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);

        File.Exists(pidFile).ShouldBeFalse();
        await using var restarted = server.Restart();
        (await WaitAsync(restarted.CreateClient(), id))["status"]!.GetValue<string>().ShouldBe("succeeded");
    }

    [Fact]
    public async Task A_restarted_server_process_reattaches_although_it_reads_the_job_start_time_a_little_apart()
    {
        var id = Id(await SubmitAsync(client, """{"mode":"sleep","seconds":3}""", timeout: 60));
        await JobProcessAsync(id);
        await server.ExitAsync();
        // A new serve process works Process.StartTime out from its own clock and uptime: the same job process reads a
        // few microseconds away from what the previous process wrote (restarting in this test process would not show it).
        var pidFile = Path.Combine(server.DataDirectory, "jobs", $"{id}.pid");
        var parts = (await File.ReadAllTextAsync(pidFile, TestContext.Current.CancellationToken)).Split(' ');
        parts[1] = (long.Parse(parts[1], CultureInfo.InvariantCulture) + 37).ToString(CultureInfo.InvariantCulture);
        await File.WriteAllTextAsync(pidFile, string.Join(' ', parts), TestContext.Current.CancellationToken);

        await using var restarted = server.Restart();
        var done = await WaitAsync(restarted.CreateClient(), id);
        done["status"]!.GetValue<string>().ShouldBe("succeeded", done["error"]?.GetValue<string>());
        done["result"]!["echo"]!["seconds"]!.GetValue<int>().ShouldBe(3);
    }

    [Fact]
    public async Task A_job_whose_process_died_while_the_server_was_down_is_failed_on_restart()
    {
        var id = Id(await SubmitAsync(client, """{"mode":"sleep","seconds":60}""", timeout: 120));
        var process = await JobProcessAsync(id);
        await server.ExitAsync();
        process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken);

        await using var restarted = server.Restart();
        var done = await WaitAsync(restarted.CreateClient(), id);
        done["status"]!.GetValue<string>().ShouldBe("failed");
        done["error"]!.GetValue<string>().ShouldContain("server restarted");
    }

    [Fact]
    public async Task Every_job_left_running_is_followed_after_a_restart_even_past_the_first_thousand()
    {
        var ct = TestContext.Current.CancellationToken;
        var template = Id(await SubmitAsync(client, """{"mode":"echo"}"""));
        await WaitAsync(client, template);
        var body = (await server.Store.GetAsync("jobs", template, ct))!.Body;
        body["status"] = "running";
        body.Remove("finished_at");
        // 1100 jobs a previous run left running (their processes long gone), written straight to the store.
        var ids = Enumerable.Range(0, 1100).Select(_ => Guid.NewGuid().ToString()).Order(StringComparer.Ordinal).ToList();
        await ((PolicyGrid.Core.Ports.IDocumentBatchStore)server.Store).CreateManyAsync("jobs", ids, id => id, (w, id) =>
        {
            var job = body.DeepClone().AsObject();
            job["job_id"] = id;
            job.WriteTo(w);
        }, ct);
        await server.ExitAsync();

        await using var restarted = server.Restart();
        var http = restarted.CreateClient();
        foreach (var id in new[] { ids[0], ids[^1] }) // the first and one past the first thousand (in id order)
        {
            var answer = await http.Get($"/jobs/{id}?wait=30");
            answer.Status.ShouldBe(200);
            var done = answer.Data!;
            done["status"]!.GetValue<string>().ShouldBe("failed", $"job {id}");
            done["error"]!.GetValue<string>().ShouldContain("server restarted");
        }
    }

    // The job's process, found through the pid file its launcher moves into place once it has started it.
    /// <summary>
    /// Waits until the job process runs the policy (its worker pool's directory is in its temp dir, with the .NET runtime's
    /// diagnostic pipes and socket), past the point where it would find a cancelled record and exit by itself; answers that temp dir.
    /// </summary>
    private static async Task<string> RunningPolicyAsync(Process process)
    {
        var temp = TempDirectoryOf(process);
        using var watcher = new FileSystemWatcher(temp) { EnableRaisingEvents = true };
        var started = new TaskCompletionSource();
        watcher.Created += (_, e) => { if (e.Name?.StartsWith("policygrid-workers-", StringComparison.Ordinal) == true) started.TrySetResult(); };
        if (Directory.GetDirectories(temp, "policygrid-workers-*").Length == 0) await started.Task.WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
        return temp;
    }

    private async Task<Process> JobProcessAsync(string jobId)
    {
        var pidFile = Path.Combine(server.DataDirectory, "jobs", $"{jobId}.pid");
        using var watcher = new FileSystemWatcher(Path.GetDirectoryName(pidFile)!.EnsureExists()) { EnableRaisingEvents = true };
        var appeared = new TaskCompletionSource();
        watcher.Created += (_, e) => { if (e.FullPath == pidFile) appeared.TrySetResult(); };
        watcher.Renamed += (_, e) => { if (e.FullPath == pidFile) appeared.TrySetResult(); };
        if (!File.Exists(pidFile)) await appeared.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        var text = await File.ReadAllTextAsync(pidFile, TestContext.Current.CancellationToken);
        return Process.GetProcessById(int.Parse(text.Split(' ')[0], CultureInfo.InvariantCulture));
    }
}

internal static class PathExtensions
{
    public static string EnsureExists(this string directory)
    {
        Directory.CreateDirectory(directory);
        return directory;
    }
}
