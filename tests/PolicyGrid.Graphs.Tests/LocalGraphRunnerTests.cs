using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Graphs;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

public sealed class LocalGraphRunnerTests
{
    private static readonly GraphRunOptions Options = new(TimeSpan.FromSeconds(30));
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static GraphPlan Plan(string[] ids, params (string From, string[] To)[] edges) =>
        GraphPlan.Build(ids, edges.ToDictionary(e => e.From, e => (IReadOnlyList<string>)e.To));

    private static GraphPlan Diamond => Plan(["A", "B", "C", "D"], ("A", ["B", "C"]), ("B", ["D"]), ("C", ["D"]));

    [Fact]
    public async Task Chain_passes_each_output_to_the_next_node_and_answers_the_sinks_output()
    {
        var functions = new ScriptedFunctions().Echo("A", "B", "C");
        var result = await new LocalGraphRunner(functions, TimeProvider.System)
            .RunAsync(Plan(["A", "B", "C"], ("A", ["B"]), ("B", ["C"])), new JsonObject { ["x"] = 1 }, Options, Ct);

        result.Result!.ToJsonString().ShouldBe("""{"by":"C","got":{"by":"B","got":{"by":"A","got":{"x":1}}}}""");
        functions.Calls.Select(c => c.Node).ShouldBe(["A", "B", "C"]);
    }

    [Fact]
    public async Task Diamond_runs_both_branches_at_the_same_time()
    {
        // B and C each wait until the other has started: the graph can only finish if they overlap.
        var started = new CountdownEvent(2);
        async Task<JsonObject> Branch(string name, CancellationToken ct)
        {
            started.Signal();
            await Task.Run(() => started.Wait(ct), ct);
            return new JsonObject { ["by"] = name };
        }
        var functions = new ScriptedFunctions().Echo("A", "D")
            .On("B", (_, ct) => Branch("B", ct))
            .On("C", (_, ct) => Branch("C", ct));

        var result = await new LocalGraphRunner(functions, TimeProvider.System).RunAsync(Diamond, new JsonObject(), Options with { Deadline = TimeSpan.FromSeconds(20) }, Ct);

        result.Result!["got"]!.ToJsonString().ShouldBe("""[{"by":"B"},{"by":"C"}]""");
    }

    [Fact]
    public async Task Join_receives_parents_outputs_in_graph_function_ids_order_not_finishing_order()
    {
        // C is listed before B, and B finishes first: the join still gets [C, B].
        var cMayFinish = new TaskCompletionSource();
        var functions = new ScriptedFunctions().Echo("A", "D")
            .On("B", (_, _) => { cMayFinish.SetResult(); return Task.FromResult(new JsonObject { ["by"] = "B" }); })
            .On("C", async (_, ct) => { await cMayFinish.Task.WaitAsync(ct); return new JsonObject { ["by"] = "C" }; });
        var plan = Plan(["A", "C", "B", "D"], ("A", ["B", "C"]), ("B", ["D"]), ("C", ["D"]));

        var result = await new LocalGraphRunner(functions, TimeProvider.System).RunAsync(plan, new JsonObject(), Options, Ct);

        result.Result!["got"]!.ToJsonString().ShouldBe("""[{"by":"C"},{"by":"B"}]""");
    }

    [Fact]
    public async Task Fan_out_to_one_sink_gives_the_sink_every_branch_output_and_every_root_the_input()
    {
        var functions = new ScriptedFunctions().Echo("R1", "R2", "R3", "S");
        var plan = Plan(["R1", "R2", "R3", "S"], ("R1", ["S"]), ("R2", ["S"]), ("R3", ["S"]));

        var result = await new LocalGraphRunner(functions, TimeProvider.System).RunAsync(plan, new JsonObject { ["n"] = 7 }, Options, Ct);

        var got = result.Result!["got"]!.AsArray();
        got.Select(g => g!["by"]!.GetValue<string>()).ShouldBe(["R1", "R2", "R3"]);
        got.ShouldAllBe(g => g!["got"]!["n"]!.GetValue<int>() == 7);
    }

    [Fact]
    public async Task A_failing_branch_stops_the_graph_and_the_error_names_the_node()
    {
        var functions = new ScriptedFunctions().Echo("A", "C", "D")
            .On("B", (_, _) => throw Problems.PolicyError("ZeroDivisionError: division by zero"));

        var error = await Should.ThrowAsync<PolicyGridException>(
            () => new LocalGraphRunner(functions, TimeProvider.System).RunAsync(Diamond, new JsonObject(), Options, Ct));

        error.Status.ShouldBe(422);
        error.Code.ShouldBe("policy_error");
        error.Message.ShouldContain("'B'");
        error.Message.ShouldContain("ZeroDivisionError");
        error.Errors.ShouldHaveSingleItem().Path.ShouldBe("B");
        functions.Calls.Select(c => c.Node).ShouldNotContain("D");
    }

    [Fact]
    public async Task A_failure_cancels_nodes_still_running()
    {
        // C fails only once B runs. A C failing first cancels the run before B is called, B never runs, and the test waited
        // its 10 s for a cancellation that could not come: it relied on the runner calling B before C, true only while
        // every step up to a scripted call completes synchronously.
        var running = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource();
        var functions = new ScriptedFunctions().Echo("A", "D")
            .On("B", async (_, ct) =>
            {
                using var registration = ct.Register(() => cancelled.TrySetResult());
                running.TrySetResult();
                await Task.Delay(Timeout.Infinite, ct);
                return [];
            })
            .On("C", async (_, ct) =>
            {
                await running.Task.WaitAsync(ct);
                throw Problems.PolicyError("boom");
            });

        var error = await Should.ThrowAsync<PolicyGridException>(
            () => new LocalGraphRunner(functions, TimeProvider.System).RunAsync(Diamond, new JsonObject(), Options, Ct));

        error.Message.ShouldContain("'C'");
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }

    [Fact]
    public async Task Past_the_deadline_the_graph_answers_504_naming_the_unfinished_nodes()
    {
        var functions = new ScriptedFunctions().Echo("A", "C", "D")
            .On("B", async (_, _) => { await Task.Delay(Timeout.Infinite, CancellationToken.None); return []; });

        var error = await Should.ThrowAsync<PolicyGridException>(() => new LocalGraphRunner(functions, TimeProvider.System)
            .RunAsync(Diamond, new JsonObject(), Options with { Deadline = TimeSpan.FromMilliseconds(200) }, Ct));

        error.Status.ShouldBe(504);
        error.Code.ShouldBe("policy_timeout");
        error.Message.ShouldContain("B");
        error.Message.ShouldContain("D");
    }

    [Fact]
    public async Task A_node_is_retried_when_the_graph_asks_for_it_and_not_by_default()
    {
        var attempts = 0;
        ScriptedFunctions Flaky() => new ScriptedFunctions().Echo("B").On("A", (_, _) =>
            ++attempts < 3 ? throw Problems.PolicyError("flaky") : Task.FromResult(new JsonObject { ["ok"] = true }));
        var plan = Plan(["A", "B"], ("A", ["B"]));

        await Should.ThrowAsync<PolicyGridException>(() => new LocalGraphRunner(Flaky(), TimeProvider.System).RunAsync(plan, null, Options, Ct));
        attempts.ShouldBe(1);

        attempts = 0;
        var result = await new LocalGraphRunner(Flaky(), TimeProvider.System)
            .RunAsync(plan, null, Options with { Retry = new NodeRetryPolicy(3, TimeSpan.Zero) }, Ct);
        attempts.ShouldBe(3);
        result.Result!["got"]!["ok"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Trace_reports_each_nodes_input_output_and_duration()
    {
        var functions = new ScriptedFunctions().Echo("A", "B", "C", "D");
        var result = await new LocalGraphRunner(functions, TimeProvider.System).RunAsync(Diamond, new JsonObject { ["q"] = 1 }, Options with { Trace = true }, Ct);

        result.Trace.Select(t => t.Node).Order().ShouldBe(["A", "B", "C", "D"]);
        var a = result.Trace.Single(t => t.Node == "A");
        a.Input!.ToJsonString().ShouldBe("""{"q":1}""");
        a.Output!["by"]!.GetValue<string>().ShouldBe("A");
        result.Trace.ShouldAllBe(t => t.DurationMs >= 0);
        result.Trace.Single(t => t.Node == "D").Input!.AsArray().Count.ShouldBe(2);
    }

    [Fact]
    public async Task Parallelism_is_bounded()
    {
        var running = 0;
        var peak = 0;
        var functions = new ScriptedFunctions().Echo("S");
        var ids = Enumerable.Range(0, 12).Select(i => $"N{i}").ToArray();
        foreach (var id in ids)
        {
            functions.On(id, async (_, _) =>
            {
                var now = Interlocked.Increment(ref running);
                InterlockedMax(ref peak, now);
                await Task.Yield();
                Interlocked.Decrement(ref running);
                return [];
            });
        }
        var plan = Plan([.. ids, "S"], [.. ids.Select(id => (id, new[] { "S" }))]);

        await new LocalGraphRunner(functions, TimeProvider.System).RunAsync(plan, null, Options with { MaxParallelism = 3 }, Ct);

        peak.ShouldBeLessThanOrEqualTo(3);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
    }
}
