using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// Alone in a collection that runs after every other test of this assembly has finished: what it measures,
/// the bytes this process allocates while a policy prints 100 MB, is process-wide, so another test running
/// beside it would count too.
/// </summary>
[CollectionDefinition(nameof(OutputFloodTests), DisableParallelization = true)]
public sealed class OutputFloodCollection;

[Collection(nameof(OutputFloodTests))]
public sealed class OutputFloodTests(PoolFixture fixture) : IClassFixture<PoolFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Printing_100_MB_keeps_the_protocol_intact_and_the_log_bounded()
    {
        var pool = fixture.Pool;
        // The workers are warm before counting starts: starting one is not what this measures.
        (await pool.InvokeAsync(PythonWorkerPoolTests.Eval("print-warm", new { mode = "ok" }), Ct)).ShouldNotBeNull();
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var result = (await pool.InvokeAsync(PythonWorkerPoolTests.Eval("print", new { mode = "print" }, seconds: 30), Ct))!["result"]!;
        result["printed_mb"]!.GetValue<int>().ShouldBe(100);
        var after = (await pool.InvokeAsync(PythonWorkerPoolTests.Eval("print", new { mode = "ok", echo = "after" }), Ct))!["result"]!;
        after["echo"]!.GetValue<string>().ShouldBe("after");
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        allocated.ShouldBeLessThan(100L << 20, "the server must not hold the policy's 100 MB of output (200 MB as .NET strings) in memory");
        var forwarded = fixture.Logs.Entries.Where(e => e.Message.Contains("misbehaving:1.0-test output", StringComparison.Ordinal)).Sum(e => (long)e.Message.Length);
        forwarded.ShouldBeLessThan(1L << 20);
    }
}
