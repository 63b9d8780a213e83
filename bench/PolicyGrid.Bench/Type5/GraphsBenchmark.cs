using System.Text.Json.Nodes;
using PolicyGrid.Bench.Type4;

namespace PolicyGrid.Bench.Type5;

/// <summary>
/// Type 5 on a real `serve` over loopback HTTP:
/// 1. a 4-node diamond via execute_graph vs calling the same four functions in sequence from the client
///    (target ≤ 1.1x for trivial nodes), and the same with nodes that each work 40 ms (the branches overlap, so
///    the graph should be clearly faster than the sequence);
/// 2. a 50-node layered graph (five layers, each node feeding every node of the next) vs its 50 calls in sequence.
///   dotnet run -c Release --project bench/PolicyGrid.Bench -- graphs [--runs 100]
/// </summary>
public static class GraphsBenchmark
{
    private const string Node = """
        import time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.work = parameters.get("work_ms", 0) / 1000.0
                self.tag = parameters.get("tag", "")
            def eval(self, parameters, input_data, context):
                if self.work:
                    time.sleep(self.work)
                return {"by": self.tag, "n": len(input_data) if isinstance(input_data, list) else 1}
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        var runs = (int)BenchGrid.Option(args, "--runs", 100);
        await using var grid = await BenchGrid.StartAsync(8);
        var policy = await grid.PolicyAsync("bench_node", Node);

        var trivial = await DiamondAsync(grid, policy, "t", 0, runs);
        var working = await DiamondAsync(grid, policy, "w", 40, Math.Max(10, runs / 5));
        var layered = await LayeredAsync(grid, policy, Math.Max(10, runs / 5));

        Console.WriteLine($"Type 5 graphs over HTTP on loopback, {Environment.ProcessorCount} CPUs");
        Print("diamond, trivial nodes", trivial, "target <= 1.1x");
        Print("diamond, 40 ms per node", working, "target clearly < 1.0x");
        Print("50 nodes in 5 layers", layered, "");
        return 0;
    }

    private static void Print(string what, (Latency Graph, Latency Sequence) r, string target) =>
        Console.WriteLine($"  {what,-24} execute_graph p50 {r.Graph.P50Ms,8:F2} ms | the same calls in sequence p50 {r.Sequence.P50Ms,8:F2} ms"
            + $" | ratio graph/sequence = {r.Graph.P50Ms / r.Sequence.P50Ms:F2}x {target}");

    private static async Task<(Latency, Latency)> DiamondAsync(BenchGrid grid, string policy, string prefix, int workMs, int runs)
    {
        var nodes = new[] { "A", "B", "C", "D" }.Select(n => $"{prefix}{n}").ToArray();
        foreach (var node in nodes) await grid.DeployAsync(node, policy, new JsonObject { ["tag"] = node, ["work_ms"] = workMs });
        var uri = await GraphAsync(grid, $"diamond_{prefix}", nodes, new JsonObject
        {
            [nodes[0]] = new JsonArray(nodes[1], nodes[2]), [nodes[1]] = new JsonArray(nodes[3]), [nodes[2]] = new JsonArray(nodes[3]),
        });
        return await CompareAsync(grid, uri, nodes, runs);
    }

    private static async Task<(Latency, Latency)> LayeredAsync(BenchGrid grid, string policy, int runs)
    {
        var layers = new[] { 10, 10, 10, 10, 9, 1 }.Select((size, l) => Enumerable.Range(0, size).Select(i => $"L{l}_{i}").ToArray()).ToArray();
        var nodes = layers.SelectMany(l => l).ToArray();
        foreach (var node in nodes) await grid.DeployAsync(node, policy, new JsonObject { ["tag"] = node });
        var connections = new JsonObject();
        for (var l = 0; l < layers.Length - 1; l++)
            foreach (var node in layers[l])
                connections[node] = new JsonArray([.. layers[l + 1].Select(n => (JsonNode)n)]);
        var uri = await GraphAsync(grid, "layered", nodes, connections);
        return await CompareAsync(grid, uri, nodes, runs);
    }

    private static async Task<string> GraphAsync(BenchGrid grid, string name, string[] nodes, JsonObject connections)
    {
        var created = await grid.PostAsync("graphs", new JsonObject
        {
            ["graph_name"] = name, ["graph_version"] = "1.0", ["graph_release_tag"] = "bench",
            ["graph_function_ids"] = new JsonArray([.. nodes.Select(n => (JsonNode)n)]),
            ["graph_connection_data"] = connections,
        });
        return created!["graph_uri"]!.GetValue<string>();
    }

    private static async Task<(Latency, Latency)> CompareAsync(BenchGrid grid, string uri, string[] nodes, int runs)
    {
        var body = new JsonObject { ["graph_uri"] = uri, ["input_data"] = new JsonObject { ["x"] = 1 } };
        var graph = await BenchGrid.LatencyAsync(runs, () => grid.PostAsync("graph/execute_graph", body.DeepClone()));
        var sequence = await BenchGrid.LatencyAsync(runs, async () =>
        {
            foreach (var node in nodes) await grid.PostAsync($"function/call_function/{node}", new JsonObject { ["x"] = 1 });
        });
        return (graph, sequence);
    }
}
