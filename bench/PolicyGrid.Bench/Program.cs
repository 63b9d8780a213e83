// Benchmarks that print ratios against a baseline measured in the same run.
//   dotnet run -c Release --project bench/PolicyGrid.Bench -- <name> [options]
// Each benchmark is one class with a static RunAsync(string[] args); add a line below for a new one.
using PolicyGrid.Bench.Type1;

var benchmarks = new Dictionary<string, Func<string[], Task<int>>>(StringComparer.OrdinalIgnoreCase)
{
    ["type1"] = Type1Benchmark.RunAsync,
};

if (args.Length == 0 || !benchmarks.TryGetValue(args[0], out var run))
{
    Console.Error.WriteLine($"usage: PolicyGrid.Bench <{string.Join("|", benchmarks.Keys)}> [options]");
    return 2;
}
return await run(args[1..]);
