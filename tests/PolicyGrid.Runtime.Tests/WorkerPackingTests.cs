using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// Calls any worker may run (Type 2 evals) of a policy known to be short share one busy worker's batches
/// instead of spreading one or two per worker; long, untimed and CPU-heavy calls keep spreading, and a
/// short call never queues behind a long one.
/// </summary>
public sealed class WorkerPackingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly BundleDirectory Bundle = TestBundles.FromSource("""
        import os, time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass

            def eval(self, parameters, input_data, context):
                time.sleep(input_data.get("sleep", 0))
                return {"pid": os.getpid()}
        """);

    private static PolicyInvocation Call(string key, double sleep = 0) => new(
        key, new PolicyLoadSpec("packing:1.0-test", Bundle, [], []), PolicyMethods.Eval,
        new JsonObject { ["input_data"] = new JsonObject { ["sleep"] = sleep }, ["context"] = new JsonObject() },
        TimeSpan.FromSeconds(10));

    private static async Task<int> PidOf(PythonWorkerPool pool, PolicyInvocation call) =>
        (await pool.InvokeOnAnyWorkerAsync(call, Ct))!["result"]!["pid"]!.GetValue<int>();

    private static async Task<PythonWorkerPool> StartAsync(Action<WorkerPoolOptions> configure)
    {
        var options = PoolFixture.TestOptions(workers: 2);
        configure(options);
        var pool = new PythonWorkerPool(options, new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());
        await pool.StartAsync(Ct);
        return pool;
    }

    [Theory]
    // in flight, long ones among them, worker CPU per mille, on current call (ticks), CPU limit, stall limit, joins
    [InlineData(3, 0, 200, 10, 500, 100, true)]
    [InlineData(0, 0, 200, 0, 500, 100, false)]     // an idle worker is not joined: the least busy one is chosen
    [InlineData(3, 1, 200, 10, 500, 100, false)]    // something long (or untimed) is queued there
    [InlineData(3, 0, 200, 101, 500, 100, false)]   // the call it runs has taken too long to be short
    [InlineData(3, 0, 500, 10, 500, 100, false)]    // its process is at the CPU share limit
    [InlineData(3, 0, 1000, 10, 500, 100, false)]   // its CPU share is not known yet
    [InlineData(WorkerSlot.MaxBatchRequests, 0, 200, 10, 500, 100, false)] // a full batch is waiting already
    public void A_short_call_joins_a_busy_worker_only_when_nothing_makes_it_wait_long(
        int inFlight, int slowInFlight, int cpuPermille, long onCall, int maxCpuPermille, long stall, bool joins) =>
        WorkerSlot.CanJoin(inFlight, slowInFlight, cpuPermille, onCall, maxCpuPermille, stall).ShouldBe(joins);

    [Fact]
    public async Task Short_calls_that_arrive_together_share_one_worker()
    {
        // Generous limits, so a loaded test machine cannot make these calls look long.
        await using var pool = await StartAsync(o => { o.PackCallsUnder = TimeSpan.FromMilliseconds(50); o.PackBelowCpuShare = 1.01; });
        for (var i = 0; i < 3; i++) await PidOf(pool, Call("short")); // timed: known to be short now
        var pids = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => PidOf(pool, Call("short"))));
        pids.GroupBy(p => p).Max(g => g.Count()).ShouldBeGreaterThanOrEqualTo(36, $"workers used: {string.Join(", ", pids.GroupBy(p => p).Select(g => $"{g.Key}×{g.Count()}"))}");
    }

    [Fact]
    public async Task A_short_call_that_finds_its_worker_idle_is_answered_before_the_call_returns()
    {
        // Sent and read on the caller's thread: no hand-off to the drainer thread and back.
        await using var pool = await StartAsync(o => { o.PackCallsUnder = TimeSpan.FromMilliseconds(50); o.PackBelowCpuShare = 1.01; });
        for (var i = 0; i < 3; i++) await PidOf(pool, Call("short"));
        var call = pool.InvokeOnAnyWorkerAsync(Call("short"), Ct);
        call.IsCompletedSuccessfully.ShouldBeTrue();
        (await call)!["result"]!["pid"]!.GetValue<int>().ShouldBeGreaterThan(0);
    }

    [Fact]
    public async Task Long_or_untimed_calls_never_hold_the_callers_thread()
    {
        await using var pool = await StartAsync(o => { o.PackCallsUnder = TimeSpan.FromMilliseconds(50); o.PackBelowCpuShare = 1.01; });
        var first = pool.InvokeOnAnyWorkerAsync(Call("long", sleep: 0.3), Ct); // untimed: its length is not known yet
        first.IsCompleted.ShouldBeFalse();
        await first;
        var timed = pool.InvokeOnAnyWorkerAsync(Call("long", sleep: 0.3), Ct); // known to be long now
        timed.IsCompleted.ShouldBeFalse();
        await timed;
    }

    [Fact]
    public async Task Callers_sending_their_own_calls_and_the_drainer_together_answer_every_call_once()
    {
        await using var pool = await StartAsync(o => { o.PackCallsUnder = TimeSpan.FromMilliseconds(50); o.PackBelowCpuShare = 1.01; });
        for (var i = 0; i < 3; i++) await PidOf(pool, Call("short"));
        // Up to two calls in flight may be sent by their callers, the rest queue for the drainer: both at once, often.
        var answered = await Task.WhenAll(Enumerable.Range(0, 3).Select(t => Task.Run(async () =>
        {
            var mine = 0;
            for (var i = 0; i < 150; i++)
            {
                var reply = await pool.InvokeOnAnyWorkerAsync(Call("short"), Ct);
                if (reply!["result"]!["pid"]!.GetValue<int>() > 0) mine++;
            }
            return mine;
        }, Ct)));
        answered.Sum().ShouldBe(450);
    }

    [Fact]
    public async Task Without_packing_the_same_calls_spread_over_the_workers()
    {
        await using var pool = await StartAsync(o => o.PackCallsUnder = TimeSpan.Zero);
        for (var i = 0; i < 3; i++) await PidOf(pool, Call("short"));
        var pids = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => PidOf(pool, Call("short", sleep: 0.01))));
        pids.Distinct().Count().ShouldBe(2);
    }

    [Fact]
    public async Task Long_calls_run_side_by_side_and_a_short_call_never_waits_behind_one()
    {
        await using var pool = await StartAsync(_ => { });
        await PidOf(pool, Call("long", sleep: 0.05)); // timed: known to be long
        for (var i = 0; i < 3; i++) await PidOf(pool, Call("short"));

        // Which worker ran each call says it; how long they took does not (the host is shared and noisy).
        var longOnes = new[] { PidOf(pool, Call("long", sleep: 0.6)), PidOf(pool, Call("long", sleep: 0.6)) };
        var both = await Task.WhenAll(longOnes);
        both.Distinct().Count().ShouldBe(2, "two long calls must not queue on one worker");

        var running = PidOf(pool, Call("long", sleep: 0.6));
        await Task.Delay(100, Ct);
        var shortPid = await PidOf(pool, Call("short"));
        shortPid.ShouldNotBe(await running);
    }
}
