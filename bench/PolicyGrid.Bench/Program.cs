// Benchmarks that print ratios against a baseline measured in the same run.
//   dotnet run -c Release --project bench/PolicyGrid.Bench -- <name> [options]
// Each benchmark is one class with a static RunAsync(string[] args); add a line below for a new one.
using PolicyGrid.Bench;
using PolicyGrid.Bench.Type1;
using PolicyGrid.Bench.Type2;
using PolicyGrid.Bench.Type4;
using PolicyGrid.Bench.Type5;

var benchmarks = new Dictionary<string, Func<string[], Task<int>>>(StringComparer.OrdinalIgnoreCase)
{
    ["type1"] = Type1Benchmark.RunAsync,
    ["type2"] = Type2Benchmark.RunAsync,
    ["query"] = QueryBenchmark.RunAsync,
    ["retention"] = RetentionBenchmark.RunAsync,
    ["decisions"] = DecisionQueryBenchmark.RunAsync,
    ["functions"] = FunctionsBenchmark.RunAsync,
    ["graphs"] = GraphsBenchmark.RunAsync,
};

if (args.Length == 0 || !benchmarks.TryGetValue(args[0], out var run))
{
    Console.Error.WriteLine($"usage: PolicyGrid.Bench <{string.Join("|", benchmarks.Keys)}> [options]");
    return 2;
}
return await run(args[1..]);
