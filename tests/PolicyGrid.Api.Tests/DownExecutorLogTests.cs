using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>What an operator reads in the log while a remote executor node is down and callers keep calling it.</summary>
public sealed class DownExecutorLogTests
{
    [Fact]
    public async Task A_node_that_is_down_is_one_warning_line_without_a_stack_trace_not_one_per_call()
    {
        // Each call logged the HTTP client's and Polly's full stack traces (Information to Error), three attempts' worth,
        // and a warning line per call after that.
        var capture = new LogCapture();
        await using var server = new GridServer { TestServices = services => services.AddSingleton<ILoggerProvider>(capture) };
        var client = server.CreateClient();
        var node = $"http://127.0.0.1:{LoopbackPorts.Free()}";
        (await client.Post("/executor", $$"""{"executor_id": "gone", "executor_host_uri": "{{node}}"}""")).Status.ShouldBe(200);

        for (var i = 0; i < 5; i++)
        {
            var answer = await client.Post("/executor/gone/execute_policy", """{"policy_rule_uri": "absent:1.0-t", "input_data": {}}""");
            (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString());
        }

        capture.Entries.Where(e => e.Error is not null).ShouldBeEmpty(capture.ToString());
        capture.Entries.Where(e => e.Category.StartsWith("Polly", StringComparison.Ordinal)
            || e.Category.StartsWith("System.Net.Http.HttpClient.policygrid-executor-nodes", StringComparison.Ordinal)).ShouldBeEmpty(capture.ToString());
        var told = capture.Entries.Where(e => e.Level >= LogLevel.Warning && (e.Message.Contains("gone", StringComparison.Ordinal) || e.Message.Contains(node, StringComparison.Ordinal))).ToList();
        told.Count.ShouldBe(1, capture.ToString());
        told[0].Level.ShouldBe(LogLevel.Warning);
        told[0].Message.ShouldStartWith("executor gone is down, marked unhealthy: executor node");
        told[0].Message.ShouldContain("could not be reached");
        told[0].Message.ShouldNotContain("\n");
    }

    [Fact]
    public async Task A_job_sent_to_a_node_that_is_down_fails_saying_so_without_a_stack_trace_in_the_log()
    {
        var capture = new LogCapture();
        await using var server = new GridServer { TestServices = services => services.AddSingleton<ILoggerProvider>(capture) };
        var client = server.CreateClient();
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        (await client.Post("/executor", $$"""{"executor_id": "gone", "executor_host_uri": "http://127.0.0.1:{{LoopbackPorts.Free()}}"}""")).Status.ShouldBe(200);

        var submitted = await client.Post("/jobs/submit/gone", $$$"""{"name": "j", "policy_rule_uri": "{{{uri}}}", "inputs": {"ip": "10.0.0.1"}}""");
        submitted.Status.ShouldBe(200, submitted.Body?.ToJsonString());
        var job = await client.Get($"/jobs/{submitted.Data!["job_id"]!.GetValue<string>()}?wait=30");
        job.Data!["status"]!.GetValue<string>().ShouldBe("failed", job.Body?.ToJsonString());

        capture.Entries.Where(e => e.Error is not null).ShouldBeEmpty(capture.ToString());
        capture.Entries.Where(e => e.Category.StartsWith("System.Net.Http.HttpClient.policygrid-", StringComparison.Ordinal)).ShouldBeEmpty(capture.ToString());
    }

    [Fact]
    public async Task A_function_whose_node_is_down_is_one_warning_not_one_per_call_and_one_line_when_it_is_back()
    {
        // Type 2 calls to a down node logged once; calls of a function hosted there logged a warning per call.
        var capture = new LogCapture();
        await using var server = new GridServer { TestServices = services => services.AddSingleton<ILoggerProvider>(capture) };
        var client = server.CreateClient();
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        using var node = new ScriptedNode(new NodeAnswer(200, """{"success": true, "data": {}}"""));
        (await client.Post("/executor", $$"""{"executor_id": "fnode", "executor_host_uri": "{{node.BaseUri}}"}""")).Status.ShouldBe(200);
        var deployed = await client.Post("/function/deployments/create/fnode", $$"""{"name": "far", "policy_rule_uri": "{{uri}}"}""");
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());

        node.Answer = NodeAnswer.Drop;
        for (var i = 0; i < 5; i++)
        {
            var answer = i % 2 == 0
                ? await client.Post("/function/call_function/far", """{"ip": "10.0.0.1"}""")
                : await client.Post("/function/far/management", """{"action": "get_state", "data": {}}""");
            (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString());
        }
        var told = capture.WarningsButThePools();
        told.Count.ShouldBe(1, capture.ToString());
        told[0].Message.ShouldStartWith("executor fnode is down; calls and management of its functions answer 503 until it answers again: executor node");

        node.Answer = new NodeAnswer(200, """{"success": true, "data": {"allowed": true}}""");
        (await client.Post("/function/call_function/far", """{"ip": "10.0.0.1"}""")).Status.ShouldBe(200);
        (await client.Post("/function/call_function/far", """{"ip": "10.0.0.1"}""")).Status.ShouldBe(200);
        capture.Entries.Count(e => e.Message == "executor fnode answers again").ShouldBe(1, capture.ToString());
        capture.WarningsButThePools().Count.ShouldBe(1, capture.ToString());
    }

    [Fact]
    public async Task A_graph_whose_node_runs_on_a_node_that_is_down_is_one_warning_not_one_per_run()
    {
        var capture = new LogCapture();
        await using var server = new GridServer { TestServices = services => services.AddSingleton<ILoggerProvider>(capture) };
        var client = server.CreateClient();
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        using var node = new ScriptedNode(new NodeAnswer(200, """{"success": true, "data": {}}"""));
        (await client.Post("/executor", $$"""{"executor_id": "gnode", "executor_host_uri": "{{node.BaseUri}}"}""")).Status.ShouldBe(200);
        (await client.Post("/function/deployments/create/gnode", $$"""{"name": "far", "policy_rule_uri": "{{uri}}"}""")).Status.ShouldBe(200);
        (await client.Post("/graphs", """{"graph_name": "remote", "graph_version": "1.0", "graph_release_tag": "t", "graph_function_ids": ["far"], "graph_connection_data": {}}""")).Status.ShouldBe(200);

        node.Answer = NodeAnswer.Drop;
        for (var i = 0; i < 3; i++)
        {
            var answer = await client.Post("/graph/execute_graph", """{"graph_uri": "remote:1.0-t", "input_data": {"ip": "10.0.0.1"}}""");
            (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString());
            answer.Message!.ShouldStartWith("graph node 'far' failed: executor node");
        }
        var told = capture.WarningsButThePools();
        told.Count.ShouldBe(1, capture.ToString());
        told[0].Message.ShouldStartWith("executor gnode is down");
    }

    [Fact]
    public async Task Jobs_followed_on_a_node_that_goes_down_are_one_warning_for_the_node_not_one_per_job_and_poll()
    {
        // Each job followed on the node logged a warning of its own at every retry while the node was down.
        var capture = new LogCapture();
        await using var server = new GridServer
        {
            TestServices = services => services.AddSingleton<ILoggerProvider>(capture),
            Settings = new() { ["Logging:LogLevel:PolicyGrid.Api.Jobs.RemoteJobLauncher"] = "Debug" },
        };
        var client = server.CreateClient();
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var node = new ScriptedNode(NodeAnswer.Hang)
        {
            // The node takes each job and holds every ask after it (a long-poll), until it goes away.
            AnswerFor = line => line.StartsWith("POST /create_job", StringComparison.Ordinal) ? new NodeAnswer(200, """{"success": true, "data": {}}""") : NodeAnswer.Hang,
        };
        (await client.Post("/executor", $$"""{"executor_id": "jnode", "executor_host_uri": "{{node.BaseUri}}"}""")).Status.ShouldBe(200);
        var jobs = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var submitted = await client.Post("/jobs/submit/jnode", $$$"""{"name": "j{{{i}}}", "policy_rule_uri": "{{{uri}}}", "inputs": {"ip": "10.0.0.1"}, "timeout_seconds": 30}""");
            submitted.Status.ShouldBe(200, submitted.Body?.ToJsonString());
            jobs.Add(submitted.Data!["job_id"]!.GetValue<string>());
        }
        await Until(() => node.Requests >= 6, capture); // three jobs taken, three asks held

        node.Dispose(); // the held asks are cut, and the next ones refused
        await Until(() => jobs.All(j => capture.Entries.Count(e => e.Message.StartsWith($"job {j}: executor node", StringComparison.Ordinal)) >= 2), capture);

        var told = capture.WarningsButThePools();
        told.Count.ShouldBe(1, capture.ToString());
        told[0].Message.ShouldStartWith("executor jnode is down; the jobs followed on it are asked after again (backing off to every 30 s) until it answers: executor node");
        told[0].Message.ShouldNotContain("\n");
    }

    // Waits for what the server does in the background; fails (with the log) when it does not happen in time.
    private static async Task Until(Func<bool> done, LogCapture capture)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!done())
        {
            clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(20), capture.ToString());
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }
}
