using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Api.Jobs;
using PolicyGrid.Cli.Commands;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary><c>policygrid job ...</c> against the embedded server.</summary>
public sealed class JobCliTests : IAsyncLifetime
{
    private readonly GridServer server = new() { PythonWorkers = 1 };
    private string policy = "";

    public async ValueTask InitializeAsync()
    {
        server.CreateClient();
        policy = await server.StorePolicyAsync("cli", "class AIOSv1PolicyRule:\n    def __init__(self, r, s, p): pass\n    def eval(self, p, i, c): return {}\n");
    }

    public async ValueTask DisposeAsync() => await server.DisposeAsync();

    private Task<(int Code, string Out, string Error)> RunAsync(params string[] args) => RunAsync(CancellationToken.None, args);

    private async Task<(int Code, string Out, string Error)> RunAsync(CancellationToken interrupt, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(output), output, error, uri =>
        {
            var client = server.CreateClient();
            client.BaseAddress = uri;
            return client;
        });
        var code = await CliApp.RunAsync([.. args, "--server", "http://localhost/"], env, interrupt);
        return (code, output.ToString(), error.ToString());
    }

    private async Task InsertPendingAsync(string id, string name = "nightly")
    {
        var doc = new JsonObject { ["job_id"] = id, ["executor_id"] = "local", ["name"] = name, ["policy_rule_uri"] = policy, ["status"] = "pending" };
        await server.Store.CreateAsync(Collections.Jobs, id, PolicyGrid.Core.Documents.Job.FromJson(doc).ToJson());
    }

    [Fact]
    public async Task Wait_shows_the_result_when_the_job_ends_and_exits_zero()
    {
        await InsertPendingAsync("cli-1");
        var token = await server.Services.GetRequiredService<JobResultTokens>().IssueAsync("cli-1", CancellationToken.None);
        var waiting = RunAsync("job", "wait", "cli-1");
        await server.CreateClient().Post("/jobs/cli-1/result", """{"status":"succeeded","result":{"rows":42}}""", bearer: token);

        var (code, output, _) = await waiting.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        code.ShouldBe(0);
        output.ShouldContain("succeeded");
        output.ShouldContain("\"rows\": 42");
        // Not a terminal (a pipe, a file, this writer): no spinner frame ("job cli-1: pending · 0s") above the result.
        output.ShouldNotContain("pending");
    }

    [Fact]
    public async Task Wait_exits_one_for_a_failed_job_and_four_when_the_wait_runs_out()
    {
        await InsertPendingAsync("cli-2");
        var token = await server.Services.GetRequiredService<JobResultTokens>().IssueAsync("cli-2", CancellationToken.None);
        (await RunAsync("job", "wait", "cli-2", "--timeout", "0.5")).Code.ShouldBe(JobCommands.StillRunning);

        await server.CreateClient().Post("/jobs/cli-2/result", """{"status":"failed","error":"disk full"}""", bearer: token);
        var (code, output, _) = await RunAsync("job", "wait", "cli-2");
        code.ShouldBe(1);
        output.ShouldContain("disk full");
    }

    [Fact]
    public async Task Get_query_and_cancel_speak_the_api()
    {
        await InsertPendingAsync("cli-3", "nightly");
        await InsertPendingAsync("cli-4", "hourly");

        var (code, output, _) = await RunAsync("job", "query", """{"name":"nightly"}""");
        code.ShouldBe(0);
        output.ShouldContain("cli-3");
        output.ShouldNotContain("cli-4");

        var got = await RunAsync("job", "get", "cli-4", "--json");
        JsonNode.Parse(got.Out)!["status"]!.GetValue<string>().ShouldBe("pending");

        var cancelled = await RunAsync("job", "cancel", "cli-4");
        cancelled.Code.ShouldBe(0);
        cancelled.Out.ShouldContain("cancelled");
    }

    [Fact]
    public async Task Cancel_of_a_job_that_already_ended_says_nothing_was_cancelled()
    {
        await InsertPendingAsync("cli-5");
        var token = await server.Services.GetRequiredService<JobResultTokens>().IssueAsync("cli-5", CancellationToken.None);
        await server.CreateClient().Post("/jobs/cli-5/result", """{"status":"succeeded","result":{}}""", bearer: token);

        var (code, output, _) = await RunAsync("job", "cancel", "cli-5");
        code.ShouldBe(0);
        output.ShouldContain("job cli-5 had already ended (succeeded): nothing to cancel");
    }

    [Fact]
    public async Task Mistakes_are_named_with_the_usage_or_server_exit_code()
    {
        (await RunAsync("job", "submit", policy, "--inputs", "{not json")).ShouldSatisfyAllConditions(
            r => r.Code.ShouldBe(2), r => r.Error.ShouldContain("--inputs"));
        (await RunAsync("job", "submit", policy, "--selector", "novalue")).Code.ShouldBe(2);
        var missing = await RunAsync("job", "get", "nope");
        missing.Code.ShouldBe(1);
        missing.Error.ShouldContain("not_found");
        var unknownExecutor = await RunAsync("job", "submit", policy, "--executor", "ghost");
        unknownExecutor.Code.ShouldBe(1);
        unknownExecutor.Error.ShouldContain("ghost");
    }

    [Fact]
    public async Task Ctrl_c_while_waiting_exits_130_and_says_the_job_keeps_running()
    {
        // SIGINT killed the CLI where it stood (a spinner's hidden cursor left hidden); cancelled in-process, it ended
        // with exit 1 and nothing said.
        await InsertPendingAsync("cli-6");
        using var ctrlC = new CancellationTokenSource(TimeSpan.FromSeconds(1));

        var (code, output, error) = await RunAsync(ctrlC.Token, "job", "wait", "cli-6").WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

        code.ShouldBe(CliCommon.Interrupted, error);
        error.ShouldBe("interrupted: job cli-6 keeps running; `policygrid job wait cli-6` follows it again, `policygrid job cancel cli-6` stops it\n", StringCompareShould.IgnoreLineEndings);
        output.ShouldNotContain("Exception");
        JsonNode.Parse((await RunAsync("job", "get", "cli-6", "--json")).Out)!["status"]!.GetValue<string>().ShouldBe("pending");
    }
}
