using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// A Type 2 call with a caller's budget (a node's <c>X-PolicyGrid-Timeout-Ms</c>) that is handed to the worker pool in
/// time but then waits there, behind a slow call on the only worker, is not started once the budget has run out: not
/// while it is queued for the worker, nor when it was already written to the worker in a batch behind the slow call.
/// Before, it ran after its caller had been told it failed, and its context change (a counter) was saved.
/// </summary>
public sealed class CallBudgetInPoolTests : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly CallerIdentity Caller = new("budget-test");

    // Management "mark" adds a mark to a file in data.dir. "hold" marks that it runs and waits for a release file (the test decides when it ends); any other call counts in its context.
    private const string Source = """
        import os, time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass

            def eval(self, parameters, input_data, context):
                hold = input_data.get("hold")
                if hold:
                    open(os.path.join(hold, "running"), "w").close()
                    while not os.path.exists(os.path.join(hold, "release")):
                        time.sleep(0.002)
                    return {"held": True}
                context["count"] = context.get("count", 0) + 1
                return {"count": context["count"]}

            def management(self, action, data):
                with open(os.path.join(data["dir"], "marks"), "a") as marks:
                    marks.write("x")
                with open(os.path.join(data["dir"], "marks")) as marks:
                    return {"marks": len(marks.read())}
        """;

    private readonly OneWorkerExecutor pool = new();
    private ExecutorHarness harness => pool.Harness;
    private string uri = "";

    public async ValueTask InitializeAsync()
    {
        uri = await pool.StartAsync("budget-counter", Source);
        // The first count: the policy is now known to write its context (its calls hold the context key's lock).
        (await CountAsync()).Output["count"]!.GetValue<int>().ShouldBe(1);
    }

    public ValueTask DisposeAsync() => pool.DisposeAsync();

    private Task<PolicyResult> CountAsync(CallBudget? budget = null) =>
        harness.Executor.ExecuteAsync(new ExecutionRequest(uri, [], ContextKey: "counter") { Budget = budget }, Caller, Ct);

    private string NewHoldDir() => pool.NewDirectory("pg-startby-");

    private Task<PolicyResult> Hold(string dir) => pool.Hold(uri, dir, Caller);

    private static void Release(string dir) => OneWorkerExecutor.Release(dir);

    private string Diag(Task t) => pool.Diag(t);

    private static Task Until(Func<bool> condition, string what) => OneWorkerExecutor.Until(condition, what);

    private static Task Until(Func<bool> condition, Func<string> what) => OneWorkerExecutor.Until(condition, what);

    private async Task ShouldBeNotStartedAsync(Task<PolicyResult> budgeted)
    {
        var error = await Should.ThrowAsync<PolicyGridException>(() => budgeted);
        error.Status.ShouldBe(504);
        error.Code.ShouldBe(ErrorCodes.PolicyTimeout);
        error.Message.ShouldContain($"call of policy {uri} was not started");
        error.Message.ShouldContain("X-PolicyGrid-Timeout-Ms");
        error.Message.ShouldEndWith("so it has no effect");
        // It did not run: the counter did not move, and the next call counts on from there.
        (await harness.Contexts.GetAsync("counter", Ct))!["count"]!.GetValue<int>().ShouldBe(1);
        (await CountAsync()).Output["count"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task A_call_queued_for_a_busy_worker_past_its_budget_answers_504_then_and_never_runs()
    {
        var hold = NewHoldDir();
        var holding = Hold(hold);
        await Until(() => File.Exists(Path.Combine(hold, "running")), "the slow call should be running on the only worker");

        var clock = new BudgetClock();
        var budget = new CallBudget(TimeSpan.FromMilliseconds(500), "X-PolicyGrid-Timeout-Ms: 500", clock);
        var budgeted = CountAsync(budget);
        // Seen queued, or already refused: on a loaded machine this thread may look only after the budget ran out.
        await Until(() => harness.Pool.Status.Queued == 1 || budgeted.IsCompleted, () => "the budgeted call should be queued in the pool behind the slow one " + Diag(budgeted));
        clock.Start();

        // Its caller is answered when the budget runs out, while the slow call still holds the worker.
        var first = await Task.WhenAny(budgeted, Task.Delay(TimeSpan.FromSeconds(30), Ct));
        var stillHeld = !holding.IsCompleted;
        Release(hold);
        first.ShouldBeSameAs(budgeted, "the budgeted call waited for the worker past its budget");
        stillHeld.ShouldBeTrue(holding.IsFaulted ? holding.Exception!.InnerException!.Message : holding.Status.ToString());
        (await holding).Output["held"]!.GetValue<bool>().ShouldBeTrue();
        await ShouldBeNotStartedAsync(budgeted);
    }

    [Fact]
    public async Task A_call_written_to_the_worker_behind_a_slow_call_is_not_run_once_its_budget_ran_out()
    {
        var first = NewHoldDir();
        var second = NewHoldDir();
        var holdingFirst = Hold(first);
        await Until(() => File.Exists(Path.Combine(first, "running")), "the first slow call should be running on the only worker");
        // The second slow call and the budgeted one queue behind the first, in that order; when it ends, both go to the
        // worker in one batch, so the budgeted call waits inside the worker while the second slow call runs.
        var holdingSecond = Hold(second);
        await Until(() => harness.Pool.Status.Queued == 1, () => "the second slow call should be queued " + Diag(holdingSecond));
        // Long enough for the batch to reach the worker on a loaded machine (counted from when the call reached the
        // pool, see BudgetClock); the test then waits for it to run out.
        var clock = new BudgetClock();
        var budget = new CallBudget(TimeSpan.FromSeconds(3), "X-PolicyGrid-Timeout-Ms: 3000", clock);
        var budgeted = CountAsync(budget);
        await Until(() => harness.Pool.Status.Queued == 2 || budgeted.IsCompleted, () => "the budgeted call should be queued behind it " + Diag(budgeted));
        // Its budget runs out 3 s after it reached the pool; Elapsed counts from a little later, so once it reaches 3 s, it has.
        clock.Start();
        var batches = harness.Pool.Batches;

        Release(first);
        await Until(() => File.Exists(Path.Combine(second, "running")), "the second slow call should be running");
        harness.Pool.Batches.ShouldBe(batches + 1, "the second slow call and the budgeted one should reach the worker in one write");
        budgeted.IsCompleted.ShouldBeFalse("the budgeted call should be in the worker's batch, not refused before it was sent");
        await Until(() => budget.Elapsed >= budget.Wait, "the budget should run out");

        Release(second);
        await holdingFirst;
        await holdingSecond;
        await ShouldBeNotStartedAsync(budgeted);
    }

    [Fact]
    public async Task A_management_action_waiting_for_the_busy_worker_past_its_budget_is_not_started()
    {
        var hold = NewHoldDir();
        var holding = Hold(hold);
        await Until(() => File.Exists(Path.Combine(hold, "running")), "the slow call should be running on the only worker");
        var marks = new JsonObject { ["dir"] = hold };

        var clock = new BudgetClock();
        var budget = new CallBudget(TimeSpan.FromMilliseconds(500), "X-PolicyGrid-Timeout-Ms: 500", clock);
        var managed = harness.Executor.ManageAsync(new ManagementRequest(uri, "mark", marks) { Budget = budget }, Caller, Ct);
        await Until(() => harness.Pool.Status.Queued == 1 || managed.IsCompleted, () => "the budgeted action should be queued in the pool behind the slow call " + Diag(managed));
        clock.Start();

        var first = await Task.WhenAny(managed, Task.Delay(TimeSpan.FromSeconds(30), Ct));
        Release(hold);
        first.ShouldBeSameAs(managed, "the budgeted action waited for the worker past its budget");
        var error = await Should.ThrowAsync<PolicyGridException>(() => managed);
        (error.Status, error.Code).ShouldBe((504, ErrorCodes.PolicyTimeout));
        error.Message.ShouldContain($"management 'mark' of policy {uri} was not started");
        error.Message.ShouldEndWith("so it has no effect");
        await holding;

        File.Exists(Path.Combine(hold, "marks")).ShouldBeFalse("the action that was not started left no mark");
        (await harness.Executor.ManageAsync(new ManagementRequest(uri, "mark", marks), Caller, Ct)).Output["marks"]!.GetValue<int>().ShouldBe(1);
    }
}
