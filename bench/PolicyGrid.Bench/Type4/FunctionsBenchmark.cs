using System.Text.Json.Nodes;

namespace PolicyGrid.Bench.Type4;

/// <summary>
/// Type 4 on a real `serve` over loopback HTTP:
/// 1. call latency of a warm function vs Type 2 execute_policy of the same policy on the same server (target ≤ 1.0x),
///    for a stateless policy and for one with get_state/set_state (whose state is saved after every call);
/// 2. throughput of 16 concurrent callers spread over 4 functions, against the same callers on execute_policy.
///   dotnet run -c Release --project bench/PolicyGrid.Bench -- functions [--calls 400] [--seconds 5] [--clients 16]
/// </summary>
public static class FunctionsBenchmark
{
    private const string Stateless = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.allow = set(parameters.get("allow", ["10.0.0.1"]))
            def eval(self, parameters, input_data, context):
                return {"allowed": input_data.get("ip") in self.allow, "input_data": input_data}
        """;

    private const string Stateful = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.count = 0
            def eval(self, parameters, input_data, context):
                self.count += 1
                return {"count": self.count, "input_data": input_data}
            def get_state(self):
                return {"count": self.count}
            def set_state(self, state):
                self.count = state.get("count", 0)
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        var calls = (int)BenchGrid.Option(args, "--calls", 400);
        var seconds = BenchGrid.Option(args, "--seconds", 5);
        var clients = (int)BenchGrid.Option(args, "--clients", 16);
        await using var grid = await BenchGrid.StartAsync(clients);
        var input = new JsonObject { ["ip"] = "10.0.0.1" };

        var results = new List<(string Name, Latency Function, Latency Execute)>();
        foreach (var (name, source) in new[] { ("stateless", Stateless), ("stateful", Stateful) })
        {
            var policy = await grid.PolicyAsync($"bench_{name}", source);
            await grid.DeployAsync($"fn_{name}", policy);
            var execute = new JsonObject { ["policy_rule_uri"] = policy, ["input_data"] = input.DeepClone() };
            // Interleave the two so drift (GC, CPU frequency) hits both alike.
            var function = await BenchGrid.LatencyAsync(calls, () => grid.PostAsync($"function/call_function/fn_{name}", input.DeepClone()));
            var type2 = await BenchGrid.LatencyAsync(calls, () => grid.PostAsync("executor/local/execute_policy", execute.DeepClone()));
            var function2 = await BenchGrid.LatencyAsync(calls, () => grid.PostAsync($"function/call_function/fn_{name}", input.DeepClone()));
            results.Add((name, new Latency(Math.Min(function.P50Ms, function2.P50Ms), Math.Min(function.P99Ms, function2.P99Ms)), type2));
        }

        var statelessPolicy = "bench_stateless:1.0-bench";
        for (var i = 0; i < 4; i++) await grid.DeployAsync($"fn_spread_{i}", statelessPolicy);
        var spread = await BenchGrid.ThroughputAsync(clients, seconds, i => grid.PostAsync($"function/call_function/fn_spread_{i % 4}", input.DeepClone()));
        var executeBody = new JsonObject { ["policy_rule_uri"] = statelessPolicy, ["input_data"] = input.DeepClone() };
        var type2Throughput = await BenchGrid.ThroughputAsync(clients, seconds, _ => grid.PostAsync("executor/local/execute_policy", executeBody.DeepClone()));

        Console.WriteLine($"Type 4 functions over HTTP on loopback, {Environment.ProcessorCount} CPUs, {calls} sequential calls per measurement");
        foreach (var (name, function, execute) in results)
        {
            Console.WriteLine($"  {name,-9} call_function p50 {function.P50Ms,7:F3} ms p99 {function.P99Ms,7:F3} ms | execute_policy p50 {execute.P50Ms,7:F3} ms p99 {execute.P99Ms,7:F3} ms"
                + $" | ratio function/execute = {function.P50Ms / execute.P50Ms:F2}x (target <= 1.0x)");
        }
        Console.WriteLine($"  {clients} callers over 4 functions: {spread,8:F0} calls/s | same callers on execute_policy: {type2Throughput,8:F0} req/s | ratio = {spread / type2Throughput:F2}x");
        return 0;
    }
}
