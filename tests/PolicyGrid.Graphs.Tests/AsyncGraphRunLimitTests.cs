using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// <c>PolicyGrid:Graphs:MaxAsyncRuns</c> and <c>MaxAsyncRunsPerCaller</c>: an <c>"async": true</c> run is answered at once,
/// and one caller could start them without end, each holding a task and its node calls until its deadline.
/// </summary>
public sealed class AsyncGraphRunLimitTests
{
    private static readonly string[] Callers = ["ops", "batch", "late"];

    private static Dictionary<string, string?> Settings()
    {
        var settings = new Dictionary<string, string?>
        {
            ["PolicyGrid:Graphs:MaxAsyncRuns"] = "2",
            ["PolicyGrid:Graphs:MaxAsyncRunsPerCaller"] = "1",
            ["PolicyGrid:Graphs:RetryAfterSeconds"] = "7",
            // The held node waits for a file this process makes in /tmp: its worker must share the host's /tmp.
            ["PolicyGrid:Runtime:Pool:PrivateTemp"] = "false",
        };
        for (var i = 0; i < Callers.Length; i++)
        {
            settings[$"PolicyGrid:Auth:Tokens:{i}:Name"] = Callers[i];
            settings[$"PolicyGrid:Auth:Tokens:{i}:Token"] = Token(Callers[i]);
            settings[$"PolicyGrid:Auth:Tokens:{i}:Scopes:0"] = "write";
        }
        return settings;
    }

    private static string Token(string caller) => $"{caller}-token-0123456789abcdef";

    private static Task<Answer> StartAsync(HttpClient client, string graph) => client.Send(HttpMethod.Post, "/graph/execute_graph",
        new JsonObject { ["graph_uri"] = graph, ["input_data"] = new JsonObject(), ["async"] = true, ["timeout_seconds"] = 600 });

    private static string Started(Answer answer)
    {
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return answer.Data!["execution_id"]!.GetValue<string>();
    }

    [Fact]
    public async Task Async_runs_past_the_callers_or_the_servers_limit_answer_429_with_Retry_After_and_a_slot_frees_when_a_run_ends()
    {
        var hold = Path.Combine(Path.GetTempPath(), "pg-graph-limit-" + Guid.NewGuid().ToString("N"));
        await using var server = new GridServer { Settings = Settings() };
        var ops = server.ClientWith(Token("ops"));
        var batch = server.ClientWith(Token("batch"));
        var late = server.ClientWith(Token("late"));
        var policy = await server.StorePolicyAsync("node", GraphPolicies.Node);
        foreach (var (name, parameters) in new[] { ("held", new JsonObject { ["hold"] = hold }), ("quick", new JsonObject()) })
        {
            parameters["tag"] = name;
            (await ops.Send(HttpMethod.Post, "/function/deployments/create/local",
                new JsonObject { ["name"] = name, ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = parameters })).Status.ShouldBe(200);
            (await ops.Send(HttpMethod.Post, "/graphs", new JsonObject
            {
                ["graph_name"] = name, ["graph_version"] = "1", ["graph_release_tag"] = "t", ["graph_function_ids"] = new JsonArray(name),
            })).Status.ShouldBe(200);
        }
        try
        {
            var first = Started(await StartAsync(ops, "held:1-t"));

            var own = await StartAsync(ops, "held:1-t");

            (own.Status, own.Code, own.Header("Retry-After")).ShouldBe((429, ErrorCodes.Overloaded, "7"), own.Body?.ToJsonString());
            own.Message.ShouldBe("'ops' has 1 asynchronous graph runs under way, the most one caller may have at once " +
                "(PolicyGrid:Graphs:MaxAsyncRunsPerCaller); retry once one has ended, or cancel one (DELETE /graph/executions/{id})");
            // Refused before anything started: one graph_run record says so, and no execution was made.
            var refused = await ops.Send(HttpMethod.Post, "/decisions/query", new JsonObject { ["graph_id"] = "held:1-t", ["kind"] = "graph_run" });
            var record = refused.Data!.AsArray().ShouldHaveSingleItem()!;
            (record["status"]!.GetValue<int>(), record["error_code"]!.GetValue<string>(), record["caller"]!.GetValue<string>()).ShouldBe((429, "overloaded", "ops"));

            // Another caller has slots of its own, until the server's are all taken.
            var second = Started(await StartAsync(batch, "held:1-t"));
            var full = await StartAsync(late, "quick:1-t");
            (full.Status, full.Code, full.Header("Retry-After")).ShouldBe((429, ErrorCodes.Overloaded, "7"), full.Body?.ToJsonString());
            full.Message.ShouldBe("this server has 2 asynchronous graph runs under way, the most it runs at once (PolicyGrid:Graphs:MaxAsyncRuns); retry later");
            // A synchronous run is its caller's own wait, not held to these.
            (await late.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = "quick:1-t", ["input_data"] = new JsonObject() }))
                .Status.ShouldBe(200);

            // A cancelled run gives its slot back by the time the DELETE answers, and one that ends by itself once it has.
            (await ops.Send(HttpMethod.Delete, $"/graph/executions/{first}")).DataStatus.ShouldBe("cancelled");
            var quick = Started(await StartAsync(ops, "quick:1-t"));
            (await AsyncGraphRuns.EndedAsync(ops, quick))["status"]!.GetValue<string>().ShouldBe("succeeded");
            Started(await StartAsync(ops, "quick:1-t"));
            await File.WriteAllTextAsync(hold, "", TestContext.Current.CancellationToken);
            (await AsyncGraphRuns.EndedAsync(batch, second))["status"]!.GetValue<string>().ShouldBe("succeeded");
            Started(await StartAsync(batch, "quick:1-t"));
        }
        finally
        {
            File.Delete(hold);
        }
    }
}
