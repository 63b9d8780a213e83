using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// Requests that queue while a worker is busy go to it in one batch. Each caller still gets its
/// own answer, a call that fails in a batch fails alone, and the calls after it — which had not
/// started — run on the replacement worker instead of failing with it.
/// </summary>
public sealed class WorkerBatchingTests : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // "hold" signals that it runs (a file in a shared directory) and waits for a release file, so a
    // test can queue requests behind it and know they will all go to the worker together.
    private static readonly BundleDirectory Bundle = TestBundles.FromSource("""
        import os, time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass

            def eval(self, parameters, input_data, context):
                mode = input_data["mode"]
                if input_data.get("echo") is not None:
                    # How many times each call ran: a file per echo, a byte per run.
                    with open(os.path.join(input_data["dir"], "ran-" + input_data["echo"]), "a") as runs:
                        runs.write("x")
                if mode == "hold":
                    open(os.path.join(input_data["dir"], "running"), "w").close()
                    while not os.path.exists(os.path.join(input_data["dir"], "release")):
                        time.sleep(0.002)
                elif mode == "loop":
                    while True:
                        pass
                elif mode == "memory":
                    hog = []
                    while True:
                        hog.append(" " * (16 << 20))
                elif mode == "touch":
                    open(os.path.join(input_data["dir"], "touched"), "w").close()
                return {"echo": input_data.get("echo"), "pid": os.getpid()}
        """);

    private readonly string shared = Directory.CreateTempSubdirectory("pg-batch-").FullName;
    private PythonWorkerPool pool = null!;

    public async ValueTask InitializeAsync()
    {
        // The worker runs as an unprivileged user: it must be able to write its markers here.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(shared, (UnixFileMode)0b111_111_111);
        var options = PoolFixture.TestOptions(workers: 1);
        options.MemoryLimitBytes = 256L << 20;
        // The markers live in a directory under /tmp that this process reads: workers must write to the host's /tmp.
        options.PrivateTemp = false;
        pool = new PythonWorkerPool(options, new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());
        await pool.StartAsync(Ct);
    }

    public async ValueTask DisposeAsync()
    {
        await pool.DisposeAsync();
        Directory.Delete(shared, recursive: true);
    }

    private PolicyInvocation Eval(string mode, object? echo = null, double seconds = 10) => new(
        "batching", new PolicyLoadSpec("batching:1.0-test", Bundle, [], []), PolicyMethods.Eval,
        new JsonObject
        {
            ["parameters"] = new JsonObject(),
            ["input_data"] = new JsonObject { ["mode"] = mode, ["dir"] = shared, ["echo"] = JsonValue.Create(echo?.ToString()) },
            ["context"] = new JsonObject(),
        },
        TimeSpan.FromSeconds(seconds));

    private static JsonObject Result(JsonNode? reply) => reply!["result"]!.AsObject();

    [Fact]
    public async Task A_key_first_used_while_its_turns_worker_is_busy_goes_to_an_idle_one()
    {
        // New keys take the workers in turn; one whose turn fell on a worker held by a slow call waited behind it, though
        // the other worker was idle (a function instance autoscaling added because the others were busy).
        var options = PoolFixture.TestOptions(workers: 2);
        options.PrivateTemp = false;
        await using var two = new PythonWorkerPool(options, new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());
        await two.StartAsync(Ct);
        PolicyInvocation Keyed(string key, string mode) => Eval(mode) with { InstanceKey = key };
        var first = Result(await two.InvokeAsync(Keyed("first", "echo"), Ct))["pid"]!.GetValue<int>();
        var second = Result(await two.InvokeAsync(Keyed("second", "echo"), Ct))["pid"]!.GetValue<int>();
        second.ShouldNotBe(first, "two keys used one after the other take the two workers");

        var holding = two.InvokeAsync(Keyed("first", "hold"), Ct);
        var until = DateTime.UtcNow.AddSeconds(20);
        while (!File.Exists(Path.Combine(shared, "running")) && DateTime.UtcNow < until) await Task.Delay(5, Ct);
        var third = two.InvokeAsync(Keyed("third", "echo"), Ct);
        var answered = await Task.WhenAny(third, Task.Delay(TimeSpan.FromSeconds(10), Ct));
        answered.ShouldBeSameAs(third, "the new key waited behind the held call instead of taking the idle worker");
        Result(await third)["pid"]!.GetValue<int>().ShouldBe(second);
        holding.IsCompleted.ShouldBeFalse();
        Release();
        await holding;
    }

    // Occupies the only worker until Release(); returns once the hold is really running there.
    private async Task<Task<JsonNode?>> HoldAsync()
    {
        var holding = pool.InvokeAsync(Eval("hold"), Ct);
        var running = Path.Combine(shared, "running");
        var until = DateTime.UtcNow.AddSeconds(20);
        while (!File.Exists(running) && DateTime.UtcNow < until && !holding.IsCompleted) await Task.Delay(5, Ct);
        File.Exists(running).ShouldBeTrue("the holding call should be running on the worker");
        return holding;
    }

    private void Release() => File.WriteAllText(Path.Combine(shared, "release"), "go");

    [Fact]
    public async Task Calls_queued_behind_a_busy_worker_go_in_one_batch_and_each_gets_its_own_answer()
    {
        var holding = await HoldAsync();
        var batchesBefore = pool.Batches;
        var calls = Enumerable.Range(0, 20).Select(i => pool.InvokeAsync(Eval("echo", i), Ct)).ToList();
        Release();
        var holderPid = Result(await holding)["pid"]!.GetValue<int>();

        var answers = await Task.WhenAll(calls);
        for (var i = 0; i < answers.Length; i++)
        {
            Result(answers[i])["echo"]!.GetValue<string>().ShouldBe(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Result(answers[i])["pid"]!.GetValue<int>().ShouldBe(holderPid);
        }
        (pool.Batches - batchesBefore).ShouldBe(1, "the twenty calls that queued behind the busy worker should reach it in one write");
    }

    [Fact]
    public async Task Load_specs_that_do_not_fit_in_one_write_go_in_several_and_warm_calls_batch_again()
    {
        // Five new instances, each with ~20 KB of parameters: their specs cannot share a 32 KiB write. Versions of the
        // holder's policy, so they share its worker and queue behind it (another policy would run on workers of its own).
        PolicyInvocation Big(int i) => new($"big-{i}",
            new PolicyLoadSpec($"batching:1.0-big{i}", Bundle, [], new JsonObject { ["pad"] = new string('p', 20_000), ["i"] = i }), PolicyMethods.Eval,
            new JsonObject { ["input_data"] = new JsonObject { ["mode"] = "echo", ["dir"] = shared, ["echo"] = i.ToString(System.Globalization.CultureInfo.InvariantCulture) }, ["context"] = new JsonObject() },
            TimeSpan.FromSeconds(10));
        var holding = await HoldAsync();
        var batchesBefore = pool.Batches;
        var first = Enumerable.Range(0, 5).Select(i => pool.InvokeAsync(Big(i), Ct)).ToList();
        Release();
        await holding;
        var answers = await Task.WhenAll(first);
        for (var i = 0; i < 5; i++) Result(answers[i])["echo"]!.GetValue<string>().ShouldBe(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        (pool.Batches - batchesBefore).ShouldBeGreaterThanOrEqualTo(5, "one spec per write");

        // Warm now: the same five calls carry no spec and queue into one write again.
        File.Delete(Path.Combine(shared, "release"));
        File.Delete(Path.Combine(shared, "running"));
        holding = await HoldAsync();
        batchesBefore = pool.Batches;
        var warm = Enumerable.Range(0, 5).Select(i => pool.InvokeAsync(Big(i), Ct)).ToList();
        Release();
        await holding;
        (await Task.WhenAll(warm)).Select(a => Result(a)["echo"]!.GetValue<string>()).ShouldBe(["0", "1", "2", "3", "4"]);
        (pool.Batches - batchesBefore).ShouldBe(1, "the five warm calls queued behind the holder go in one write");
    }

    [Fact]
    public async Task A_call_that_overruns_inside_a_batch_fails_alone_and_the_calls_after_it_run_on_the_replacement()
    {
        var holding = await HoldAsync();
        var before = Enumerable.Range(0, 2).Select(i => pool.InvokeAsync(Eval("echo", $"before{i}"), Ct)).ToList();
        var overrun = pool.InvokeAsync(Eval("loop", "late", seconds: 1), Ct);
        var after = Enumerable.Range(0, 3).Select(i => pool.InvokeAsync(Eval("echo", i), Ct)).ToList();
        Release();
        var holderPid = Result(await holding)["pid"]!.GetValue<int>();

        foreach (var answer in await Task.WhenAll(before))
            Result(answer)["pid"]!.GetValue<int>().ShouldBe(holderPid, "calls answered before the overrun keep their answers");
        var timeout = await Should.ThrowAsync<PolicyGridException>(() => overrun);
        timeout.Status.ShouldBe(504);
        foreach (var answer in await Task.WhenAll(after))
            Result(answer)["pid"]!.GetValue<int>().ShouldNotBe(holderPid, "calls after the overrun had not started: they run on the new worker");
        foreach (var echo in new[] { "before0", "before1", "late", "0", "1", "2" })
            File.ReadAllText(Path.Combine(shared, "ran-" + echo)).Length.ShouldBe(1, $"call {echo} runs once, whatever happens to its batch");
    }

    [Fact]
    public async Task A_memory_error_inside_a_batch_retires_the_worker_and_the_calls_after_it_run_on_a_fresh_one()
    {
        var holding = await HoldAsync();
        var bomb = pool.InvokeAsync(Eval("memory"), Ct);
        var after = Enumerable.Range(0, 3).Select(i => pool.InvokeAsync(Eval("echo", i), Ct)).ToList();
        Release();
        var holderPid = Result(await holding)["pid"]!.GetValue<int>();

        var error = await Should.ThrowAsync<PolicyGridException>(() => bomb);
        error.Code.ShouldBe("policy_memory_limit");
        var pids = (await Task.WhenAll(after)).Select(a => Result(a)["pid"]!.GetValue<int>()).Distinct().ToList();
        pids.ShouldHaveSingleItem().ShouldNotBe(holderPid);
    }

    [Fact]
    public async Task A_call_abandoned_while_still_queued_never_runs()
    {
        var holding = await HoldAsync();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var abandoned = pool.InvokeAsync(Eval("touch"), cancel.Token);
        await cancel.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(() => abandoned);
        Release();
        await holding;

        Result(await pool.InvokeAsync(Eval("echo", "next"), Ct))["echo"]!.GetValue<string>().ShouldBe("next");
        File.Exists(Path.Combine(shared, "touched")).ShouldBeFalse("a call given up before it was sent must not run");
    }

    [Fact]
    public async Task Shutting_the_pool_down_fails_the_calls_still_waiting_instead_of_leaving_them_hanging()
    {
        var holding = await HoldAsync();
        var waiting = Enumerable.Range(0, 3).Select(i => pool.InvokeAsync(Eval("echo", i), Ct)).ToList();
        await pool.DisposeAsync();

        foreach (var call in waiting) await Should.ThrowAsync<ObjectDisposedException>(() => call);
        // The call that was running loses its worker with the pool; it ends too, one way or another.
        await Should.ThrowAsync<Exception>(() => holding);
    }
}
