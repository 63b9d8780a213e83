using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// Type 2 calls known to be short are packed into one worker's batches. A short call that suddenly hangs in such a
/// batch fails alone: the calls answered before it keep their answers, the calls after it, which never started, run
/// on the replacement, and no call runs twice (a guard for any scheme that holds replies back to save wake-ups).
/// </summary>
public sealed class WorkerShortBatchTests : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Each call leaves a file named after its echo (how many times it ran); "hold" waits for a release file so calls
    // queue behind it; "hang" sleeps far past its deadline.
    private static readonly BundleDirectory Bundle = TestBundles.FromSource("""
        import os, time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass

            def eval(self, parameters, input_data, context):
                mode = input_data.get("mode")
                echo = input_data.get("echo")
                if echo is not None:
                    with open(os.path.join(input_data["dir"], "ran-" + str(echo)), "a") as f:
                        f.write("x")
                if mode == "hold":
                    while not os.path.exists(os.path.join(input_data["dir"], "release")):
                        time.sleep(0.002)
                elif mode == "hang":
                    time.sleep(60)
                return {"echo": echo, "pid": os.getpid()}
        """);

    private readonly string shared = Directory.CreateTempSubdirectory("pg-short-batch-").FullName;
    private PythonWorkerPool pool = null!;

    public async ValueTask InitializeAsync()
    {
        // The worker runs as an unprivileged user: it must be able to write its markers here.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(shared, (UnixFileMode)0b111_111_111);
        // One worker, and limits a loaded test machine cannot make these calls miss: they are packed as short ones.
        pool = PoolFixture.NewPool(workers: 1, o => { o.PackCallsUnder = TimeSpan.FromMilliseconds(200); o.PackBelowCpuShare = 1.01; });
        await pool.StartAsync(Ct);
        for (var i = 0; i < 3; i++) await pool.InvokeOnAnyWorkerAsync(Call(null, null), Ct); // timed: known to be short now
    }

    public async ValueTask DisposeAsync()
    {
        await pool.DisposeAsync();
        try { Directory.Delete(shared, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private PolicyInvocation Call(string? mode, string? echo, double seconds = 5) => new(
        "t2:short", new PolicyLoadSpec("short-batch:1.0-test", Bundle, [], []), PolicyMethods.Eval,
        new JsonObject { ["input_data"] = new JsonObject { ["mode"] = mode, ["echo"] = echo, ["dir"] = shared }, ["context"] = new JsonObject() },
        TimeSpan.FromSeconds(seconds));

    private Task<JsonNode?> Run(string? mode, string? echo, double seconds = 5) => pool.InvokeOnAnyWorkerAsync(Call(mode, echo, seconds), Ct);

    private static int Pid(JsonNode? answer) => answer!["result"]!["pid"]!.GetValue<int>();

    private int Runs(string echo) => File.Exists(Path.Combine(shared, "ran-" + echo)) ? File.ReadAllText(Path.Combine(shared, "ran-" + echo)).Length : 0;

    // A holder occupies the worker, the given calls queue behind it, and go to it in one batch when it ends.
    private async Task<(int HolderPid, List<Task<JsonNode?>> Batch)> BatchBehindHolderAsync(params (string? Mode, string Echo, double Seconds)[] calls)
    {
        var holder = Run("hold", "holder", seconds: 30);
        while (Runs("holder") == 0) await Task.Delay(5, Ct);
        var batch = calls.Select(c => Run(c.Mode, c.Echo, c.Seconds)).ToList();
        await Task.Delay(100, Ct); // all queued
        await File.WriteAllTextAsync(Path.Combine(shared, "release"), "", Ct);
        return (Pid(await holder), batch);
    }

    [Fact]
    public async Task A_short_call_that_hangs_in_a_packed_batch_fails_alone_and_no_call_runs_twice()
    {
        var (holderPid, batch) = await BatchBehindHolderAsync(("echo", "a", 1), ("echo", "b", 1), ("hang", "h", 1), ("echo", "c", 1), ("echo", "d", 1));

        Pid(await batch[0]).ShouldBe(holderPid, "a was answered by the worker that ran it, not run again");
        Pid(await batch[1]).ShouldBe(holderPid);
        var late = await Should.ThrowAsync<PolicyGridException>(() => batch[2]);
        late.Status.ShouldBe(504);
        late.Message.ShouldContain("ran past its deadline of 1s");
        Pid(await batch[3]).ShouldNotBe(holderPid, "c never started on the stopped worker: it runs on the replacement");
        Pid(await batch[4]).ShouldNotBe(holderPid);
        foreach (var echo in new[] { "a", "b", "h", "c", "d" }) Runs(echo).ShouldBe(1, $"{echo} ran once");
        Pid(await Run("echo", "after")).ShouldNotBe(holderPid);
    }
}
