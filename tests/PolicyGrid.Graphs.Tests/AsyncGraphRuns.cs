using System.Text.Json.Nodes;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary><c>"async": true</c> graph runs over HTTP: start one, and read its record once it has ended.</summary>
internal static class AsyncGraphRuns
{
    /// <summary>Starts an async run of <paramref name="graph"/> with an empty input; answers its execution id.</summary>
    public static async Task<string> StartAsync(HttpClient client, string graph, double? timeoutSeconds = null)
    {
        var body = new JsonObject { ["graph_uri"] = graph, ["input_data"] = new JsonObject(), ["async"] = true };
        if (timeoutSeconds is { } seconds) body["timeout_seconds"] = seconds;
        var started = await client.Send(HttpMethod.Post, "/graph/execute_graph", body);
        started.Status.ShouldBe(200, started.Body?.ToJsonString());
        return started.Data!["execution_id"]!.GetValue<string>();
    }

    /// <summary>The execution's record once it is no longer running (within 30 s).</summary>
    public static async Task<JsonNode> EndedAsync(HttpClient client, string id)
    {
        var giveUp = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var record = (await client.Send(HttpMethod.Get, $"/graph/executions/{id}")).Data!;
            if (record["status"]!.GetValue<string>() != "running") return record;
            DateTime.UtcNow.ShouldBeLessThan(giveUp, $"execution {id} still running");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>Starts an async run and answers its record once it has ended.</summary>
    public static async Task<JsonNode> RunAsync(HttpClient client, string graph) => await EndedAsync(client, await StartAsync(client, graph));
}
