using System.Diagnostics;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// <c>DELETE /graph/executions/{id}</c>: an async run with a long deadline could only be read, never stopped, and went on
/// calling its nodes until its deadline.
/// </summary>
public sealed class GraphExecutionCancelTests
{
    private const string Reader = "graph-reader-token-0123456789";
    private const string Writer = "graph-writer-token-0123456789";

    private static readonly Dictionary<string, string?> Tokens = new()
    {
        ["PolicyGrid:Auth:Tokens:0:Name"] = "dashboard",
        ["PolicyGrid:Auth:Tokens:0:Token"] = Reader,
        ["PolicyGrid:Auth:Tokens:0:Scopes:0"] = "read",
        ["PolicyGrid:Auth:Tokens:1:Name"] = "ops",
        ["PolicyGrid:Auth:Tokens:1:Token"] = Writer,
        ["PolicyGrid:Auth:Tokens:1:Scopes:0"] = "read",
        ["PolicyGrid:Auth:Tokens:1:Scopes:1"] = "write",
        // The held node waits for a file this process makes in /tmp: its worker must share the host's /tmp.
        ["PolicyGrid:Runtime:Pool:PrivateTemp"] = "false",
    };

    // A deadline far past the test: only the DELETE ends these runs early.
    private static Task<string> StartAsync(HttpClient client, string graph) => AsyncGraphRuns.StartAsync(client, graph, timeoutSeconds: 600);

    private static Task<JsonNode> EndedAsync(HttpClient client, string id) => AsyncGraphRuns.EndedAsync(client, id);

    private static async Task Deploy(HttpClient client, string policy, string name, JsonObject parameters)
    {
        parameters["tag"] = name;
        var deployed = await client.Send(HttpMethod.Post, "/function/deployments/create/local",
            new JsonObject { ["name"] = name, ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = parameters });
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
    }

    [Fact]
    public async Task A_writer_cancels_a_running_execution_no_further_node_runs_and_the_record_names_who()
    {
        var hold = Path.Combine(Path.GetTempPath(), "pg-graph-cancel-" + Guid.NewGuid().ToString("N"));
        await using var server = new GridServer { Settings = new(Tokens) };
        var writer = server.ClientWith(Writer);
        var reader = server.ClientWith(Reader);
        var policy = await server.StorePolicyAsync("node", GraphPolicies.Node); // POST /policy would need the token
        await Deploy(writer, policy, "held", new JsonObject { ["hold"] = hold });
        await Deploy(writer, policy, "after", []);
        (await writer.Send(HttpMethod.Post, "/graphs", new JsonObject
        {
            ["graph_name"] = "slow", ["graph_version"] = "1", ["graph_release_tag"] = "t",
            ["graph_function_ids"] = new JsonArray("held", "after"), ["graph_connection_data"] = new JsonObject { ["held"] = new JsonArray("after") },
        })).Status.ShouldBe(200);
        var id = await StartAsync(writer, "slow:1-t");

        var refused = await reader.Send(HttpMethod.Delete, $"/graph/executions/{id}");
        (refused.Status, refused.Code).ShouldBe((403, ErrorCodes.Forbidden), refused.Body?.ToJsonString());
        refused.Message.ShouldContain("needs 'write'");
        (await reader.Send(HttpMethod.Get, $"/graph/executions/{id}")).DataStatus.ShouldBe("running");

        var watch = Stopwatch.StartNew();
        var cancelled = await writer.Send(HttpMethod.Delete, $"/graph/executions/{id}");
        watch.Stop();

        cancelled.Status.ShouldBe(200, cancelled.Body?.ToJsonString());
        var record = cancelled.Data!;
        record["status"]!.GetValue<string>().ShouldBe("cancelled");
        record["error"]!.GetValue<string>().ShouldBe($"cancelled by ops (DELETE /graph/executions/{id})");
        record["error_code"]!.GetValue<string>().ShouldBe("cancelled");
        record["finished_at"]!.GetValue<string>().ShouldNotBeEmpty();
        record["result"]!.ToJsonString().ShouldBe("{}");
        // The held node waits 20 s for its file: the answer did not wait for it.
        watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10));
        (await reader.Send(HttpMethod.Get, $"/graph/executions/{id}")).Data!.ToJsonString().ShouldBe(record.ToJsonString());

        // Released now, the held node could go on to its child, were the run still going: it is not.
        await File.WriteAllTextAsync(hold, "", TestContext.Current.CancellationToken);
        try
        {
            var second = await StartAsync(writer, "slow:1-t");
            var watchUntil = DateTime.UtcNow.AddSeconds(20);
            (await EndedAsync(writer, second))["status"]!.GetValue<string>().ShouldBe("succeeded", "a run after the release goes through to 'after'");
            // Once the second run's record of 'after' is in the log, one of the cancelled run's would be too.
            while ((await AfterRecordsAsync(writer, second)).Count == 0)
            {
                DateTime.UtcNow.ShouldBeLessThan(watchUntil, "the second run's record of 'after' never showed");
                await Task.Delay(20, TestContext.Current.CancellationToken);
            }
            (await AfterRecordsAsync(writer, id)).ShouldBeEmpty();
        }
        finally
        {
            File.Delete(hold);
        }
    }

    private static async Task<JsonArray> AfterRecordsAsync(HttpClient client, string execution)
    {
        var log = await client.Send(HttpMethod.Post, "/decisions/query", new JsonObject { ["execution_id"] = execution, ["function_id"] = "after" });
        log.Status.ShouldBe(200, log.Body?.ToJsonString());
        return log.Data!.AsArray();
    }

    [Fact]
    public async Task An_ended_execution_is_answered_unchanged_an_unknown_one_is_a_404_naming_it_and_one_cut_off_by_a_restart_reads_failed()
    {
        await using var server = new GridServer();
        var client = server.CreateClient();
        var policy = await server.RegisterPolicyAsync("node", GraphPolicies.Node);
        await Deploy(client, policy, "quick", []);
        (await client.Send(HttpMethod.Post, "/graphs", new JsonObject
        {
            ["graph_name"] = "quick", ["graph_version"] = "1", ["graph_release_tag"] = "t", ["graph_function_ids"] = new JsonArray("quick"),
        })).Status.ShouldBe(200);
        var done = await EndedAsync(client, await StartAsync(client, "quick:1-t"));
        done["status"]!.GetValue<string>().ShouldBe("succeeded");

        var again = await client.Send(HttpMethod.Delete, $"/graph/executions/{done["execution_id"]}");
        again.Status.ShouldBe(200, again.Body?.ToJsonString());
        again.Data!.ToJsonString().ShouldBe(done.ToJsonString());

        var unknown = await client.Send(HttpMethod.Delete, "/graph/executions/nope");
        (unknown.Status, unknown.Code, unknown.Message).ShouldBe((404, ErrorCodes.NotFound, "no graph execution 'nope'"));

        // A record left "running" by an earlier process: nothing here runs it, so there is nothing to stop.
        await server.Store.CreateAsync(Collections.GraphExecutions, "orphan", new JsonObject
        {
            ["execution_id"] = "orphan", ["graph_uri"] = "quick:1-t", ["status"] = "running", ["result"] = new JsonObject(),
            ["error"] = "", ["error_code"] = "", ["created_at"] = "2026-01-01T00:00:00.000Z", ["finished_at"] = "",
        }, TestContext.Current.CancellationToken);
        var orphan = await client.Send(HttpMethod.Delete, "/graph/executions/orphan");
        orphan.Status.ShouldBe(200, orphan.Body?.ToJsonString());
        (orphan.DataStatus, orphan.Data!["error_code"]!.GetValue<string>()).ShouldBe(("failed", ErrorCodes.BackendUnavailable));
        orphan.Data!["error"]!.GetValue<string>().ShouldContain("restarted");
    }

    [Fact]
    public async Task In_the_Dapr_shape_cancelling_terminates_the_workflow_instance()
    {
        var workflows = WorkflowInstancesDouble.NeverEnding();
        await using var graphsApp = await GraphsAppHost.StartAsync(workflows);
        await using var server = graphsApp.Registry(new DaprGraphOutageLogTests.FunctionsApp());
        var client = await DaprGraphOutageLogTests.FarOnActorsAsync(server, """{"graph_name": "remote", "graph_version": "1.0", "graph_release_tag": "t", "graph_function_ids": ["far"]}""");
        var id = await StartAsync(client, "remote:1.0-t");
        var giveUp = DateTime.UtcNow.AddSeconds(20);
        while (workflows.Started.Count == 0)
        {
            DateTime.UtcNow.ShouldBeLessThan(giveUp, "the workflow never started");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        var cancelled = await client.Send(HttpMethod.Delete, $"/graph/executions/{id}");

        cancelled.Status.ShouldBe(200, cancelled.Body?.ToJsonString());
        (cancelled.DataStatus, cancelled.Data!["error"]!.GetValue<string>()).ShouldBe(("cancelled", $"cancelled by anonymous (DELETE /graph/executions/{id})"));
        // The registry hangs up; the graphs app, whose wait that ends, terminates the instance it started.
        var instance = workflows.Started.Keys.Single();
        instance.ShouldBe($"graph-{id}", "the workflow instance is named after the execution the registry answered");
        while (!workflows.Terminated.Contains(instance))
        {
            DateTime.UtcNow.ShouldBeLessThan(giveUp, "the workflow instance was never terminated");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }
}
