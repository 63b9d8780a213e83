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
}
