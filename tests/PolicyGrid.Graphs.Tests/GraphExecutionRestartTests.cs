using System.Text.Json.Nodes;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

public sealed class GraphExecutionRestartTests
{
    [Fact]
    public async Task A_finished_async_execution_is_still_there_after_a_restart_and_an_unfinished_one_reads_as_failed()
    {
        await using var server = new GridServer();
        var hold = Path.Combine(server.DataDirectory, "hold-" + Guid.NewGuid().ToString("N"));
        var client = server.CreateClient();
        var policy = await server.RegisterPolicyAsync("node", GraphPolicies.Node);
        foreach (var (name, parameters) in new[]
        {
            ("quick", new JsonObject { ["tag"] = "quick" }),
            ("stuck", new JsonObject { ["tag"] = "stuck", ["hold"] = hold }),
        })
        {
            (await client.Send(HttpMethod.Post, "/function/deployments/create/local",
                new JsonObject { ["name"] = name, ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = parameters })).Status.ShouldBe(200);
            (await client.Send(HttpMethod.Post, "/graphs", new JsonObject
            {
                ["graph_name"] = name, ["graph_version"] = "1", ["graph_release_tag"] = "t",
                ["graph_function_ids"] = new JsonArray(name), ["graph_connection_data"] = new JsonObject(),
            })).Status.ShouldBe(200);
        }

        var done = (await client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = "quick:1-t", ["input_data"] = new JsonObject(), ["async"] = true }))
            .Data!["execution_id"]!.GetValue<string>();
        var cut = (await client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = "stuck:1-t", ["input_data"] = new JsonObject(), ["async"] = true }))
            .Data!["execution_id"]!.GetValue<string>();
        var giveUp = DateTime.UtcNow.AddSeconds(20);
        while ((await client.Send(HttpMethod.Get, $"/graph/executions/{done}")).Data!["status"]!.GetValue<string>() == "running")
        {
            DateTime.UtcNow.ShouldBeLessThan(giveUp);
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        (await client.Send(HttpMethod.Get, $"/graph/executions/{cut}")).Data!["status"]!.GetValue<string>().ShouldBe("running");
        await server.ExitAsync();
        await File.WriteAllTextAsync(hold, "", TestContext.Current.CancellationToken);

        await using var restarted = server.Restart();
        var again = restarted.CreateClient();
        var finished = (await again.Send(HttpMethod.Get, $"/graph/executions/{done}")).Data!;
        finished["status"]!.GetValue<string>().ShouldBe("succeeded");
        finished["result"]!["by"]!.GetValue<string>().ShouldBe("quick");
        var interrupted = (await again.Send(HttpMethod.Get, $"/graph/executions/{cut}")).Data!;
        interrupted["status"]!.GetValue<string>().ShouldBe("failed");
        // A graceful stop records the cut-off run itself; after a hard kill the next read says the server restarted.
        interrupted["error"]!.GetValue<string>().ShouldMatch("stopped|restarted");
    }
}
