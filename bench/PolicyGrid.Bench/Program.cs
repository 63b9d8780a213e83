// Benchmarks print ratios against a baseline run beside them in the same process.
// Run one with: dotnet run -c Release --project bench/PolicyGrid.Bench -- <name>
// Add a benchmark: a class with `static Task<int> RunAsync(string[] args)` and one line below.
using PolicyGrid.Bench;

var benchmarks = new Dictionary<string, Func<string[], Task<int>>>(StringComparer.OrdinalIgnoreCase)
{
    ["query"] = QueryBenchmark.RunAsync,
};

if (args.Length == 0 || !benchmarks.TryGetValue(args[0], out var run))
{
    Console.Error.WriteLine($"usage: PolicyGrid.Bench <{string.Join("|", benchmarks.Keys)}> [options]");
    return 2;
}
return await run(args[1..]);
