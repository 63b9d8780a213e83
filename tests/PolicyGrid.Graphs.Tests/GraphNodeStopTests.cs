using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// A graph node's call that its run stopped waiting for (the run was cancelled) while the call still ran, when the
/// server stops: its decision is in the decision log once the server has stopped, as every call's is.
/// </summary>
public sealed class GraphNodeStopTests
{
    [Fact]
    public async Task A_node_call_still_running_when_the_server_stops_is_recorded_before_the_server_has_stopped()
    {
        var log = new LogCapture();
        var markers = Directory.CreateTempSubdirectory("pg-graph-stop-");
        // A policy's worker may run as another user (the server as root): it must be able to write the marker here.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(markers.FullName, (UnixFileMode)0b111_111_111);
        // The node announces itself in the directory, then waits (20 s) for a node that never comes: cancellation reaches
        // it only as its worker being killed.
        var marker = Path.Combine(markers.FullName, "sleeper");
        await using var server = new GridServer
        {
            TestServices = services => services.AddSingleton<ILoggerProvider>(log),
            Settings = new() { ["PolicyGrid:Runtime:Pool:PrivateTemp"] = "false" },
        };
        try
        {
            var client = server.CreateClient();
            var policy = await server.RegisterPolicyAsync("node", GraphPolicies.Node);
            (await client.Send(HttpMethod.Post, "/function/deployments/create/local", new JsonObject
            {
                ["name"] = "sleeper", ["policy_rule_uri"] = policy,
                ["policy_rule_parameters"] = new JsonObject { ["tag"] = "sleeper", ["meet_dir"] = markers.FullName, ["meet_other"] = "nobody" },
            })).Status.ShouldBe(200);
            (await client.Send(HttpMethod.Post, "/graphs", new JsonObject
            {
                ["graph_name"] = "sleeper", ["graph_version"] = "1", ["graph_release_tag"] = "t",
                ["graph_function_ids"] = new JsonArray("sleeper"), ["graph_connection_data"] = new JsonObject(),
            })).Status.ShouldBe(200);
            var started = await client.Send(HttpMethod.Post, "/graph/execute_graph",
                new JsonObject { ["graph_uri"] = "sleeper:1-t", ["input_data"] = new JsonObject(), ["async"] = true });
            started.Status.ShouldBe(200, started.Body?.ToJsonString());
            var execution = started.Data!["execution_id"]!.GetValue<string>();
            var giveUp = DateTime.UtcNow.AddSeconds(30);
            while (!File.Exists(marker))
            {
                DateTime.UtcNow.ShouldBeLessThan(giveUp, "the node's policy did not start");
                await Task.Delay(20, TestContext.Current.CancellationToken);
            }

            // The stop cancels the run at once; the node's call ends only once its worker is killed. Once the server has
            // stopped (a process would end here), its decision must be in the store.
            await server.ExitAsync();

            await using var restarted = server.Restart();
            var decisions = (await restarted.CreateClient().Send(HttpMethod.Post, "/decisions/query", new JsonObject())).Data!.AsArray();
            var recorded = decisions.Select(d => d!.AsObject())
                .Select(d => $"{d["kind"]} {d["function_id"]} {d["graph_id"]} {d["execution_id"]}: {d["status"]} {d["error_code"]}").ToArray();
            recorded.ShouldBe([$"function_call sleeper sleeper:1-t {execution}: 499 cancelled"], log.ToString());
            log.Entries.ShouldNotContain(e => e.Message.Contains("after the log closed", StringComparison.Ordinal), log.ToString());
            // And the run's own record says the server stopped it: the stop waits for it to be stored. Nothing waited, and the
            // store could close first: the next read then recorded it cut off by a restart.
            var record = (await restarted.CreateClient().Send(HttpMethod.Get, $"/graph/executions/{execution}")).Data!;
            (record["status"]!.GetValue<string>(), record["error"]!.GetValue<string>(), record["error_code"]!.GetValue<string>())
                .ShouldBe(("failed", "the server stopped during this execution", "backend_unavailable"));
            log.Entries.ShouldNotContain(e => e.Level >= LogLevel.Error, log.ToString());
        }
        finally
        {
            try { markers.Delete(recursive: true); } catch (IOException) { }
        }
    }
}
