using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// A Type 2 call checked before its policy was retired (or deleted), which then waits in the worker pool for the
/// policy's only worker (busy with a slow call), is not run: 410 (404) "... it did not run". Before, the pool sent it
/// when the worker got free, and it ran on a retired policy.
/// </summary>
public sealed class QueuedCallRetiredTests : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly CallerIdentity Caller = new("queued-test");

    // "hold": marks that it runs and waits for a release file. "mark": leaves a file named after the call, so a call that
    // ran shows. Management "mark" does the same. Nothing touches the context (calls run without its lock).
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
                open(os.path.join(input_data["mark"], input_data["name"]), "w").close()
                return {"ran": input_data["name"]}

            def management(self, action, data):
                open(os.path.join(data["mark"], data["name"]), "w").close()
                return {"ran": data["name"]}
        """;

    // The slow call holds the only worker, and the next call queues in the pool behind it.
    private readonly OneWorkerExecutor pool = new();
    private ExecutorHarness harness => pool.Harness;
    private string dir = "";
    private string uri = "";

    public async ValueTask InitializeAsync()
    {
        dir = pool.NewDirectory("pg-queued-");
        uri = await pool.StartAsync("queued-retire", Source);
    }

    public ValueTask DisposeAsync() => pool.DisposeAsync();

    private Task<PolicyResult> Hold() => pool.Hold(uri, dir, Caller);

    // Made from a thread of its own, as a server's request is: a call that finds the worker idle runs on its caller's
    // thread (WorkerSlot.Submit).
    private Task<PolicyResult> Mark(string name) =>
        Task.Run(() => harness.Executor.ExecuteAsync(new ExecutionRequest(uri, new JsonObject { ["mark"] = dir, ["name"] = name }, ContextKey: name),
            Caller, Ct), Ct);

    private void Release() => OneWorkerExecutor.Release(dir);

    private static Task Until(Func<bool> condition, string what) => OneWorkerExecutor.Until(condition, what);

    // The slow call runs on the only worker, and `queued` waits in the pool behind it.
    private async Task<(Task<PolicyResult> Holding, Task<T> Queued)> QueueBehindSlowCallAsync<T>(Func<Task<T>> queue)
    {
        var holding = Hold();
        await Until(() => File.Exists(Path.Combine(dir, "running")), "the slow call should be running on the only worker");
        var queued = queue();
        await Until(() => harness.Pool.Status.Queued == 1 || queued.IsCompleted, "the call should be queued in the pool behind the slow one");
        queued.IsCompleted.ShouldBeFalse("the call should wait for the busy worker");
        return (holding, queued);
    }

    [Fact]
    public async Task A_call_queued_for_a_busy_worker_when_its_policy_is_retired_answers_410_and_does_not_run()
    {
        var (holding, queued) = await QueueBehindSlowCallAsync(() => Mark("after-retire"));

        await harness.SetStatusAsync(uri, PolicyStatus.Retired);
        Release();

        (await holding).Output["held"]!.GetValue<bool>().ShouldBeTrue("the call already running ends as it began");
        var error = await Should.ThrowAsync<PolicyGridException>(() => queued);
        (error.Status, error.Code).ShouldBe((410, ErrorCodes.Retired));
        error.Message.ShouldContain($"policy '{uri}' was retired while this call waited for a policy worker");
        error.Message.ShouldEndWith("it did not run");
        File.Exists(Path.Combine(dir, "after-retire")).ShouldBeFalse("the queued call must not run on a retired policy");
    }

    [Fact]
    public async Task A_call_queued_for_a_busy_worker_when_its_policy_is_deleted_answers_404_and_does_not_run()
    {
        var (holding, queued) = await QueueBehindSlowCallAsync(() => Mark("after-delete"));

        await harness.Documents.DeleteAsync(Collections.Policies, uri, null, Ct);
        Release();

        await holding;
        var error = await Should.ThrowAsync<PolicyGridException>(() => queued);
        error.Status.ShouldBe(404);
        error.Message.ShouldContain($"policy '{uri}' was deleted while this call waited for a policy worker");
        error.Message.ShouldEndWith("it did not run");
        File.Exists(Path.Combine(dir, "after-delete")).ShouldBeFalse("the queued call must not run on a deleted policy");
    }

    [Fact]
    public async Task A_management_action_queued_when_its_policy_is_retired_does_not_run()
    {
        var (holding, queued) = await QueueBehindSlowCallAsync(() => Task.Run(() =>
            harness.Executor.ManageAsync(new ManagementRequest(uri, "mark", new JsonObject { ["mark"] = dir, ["name"] = "managed" }), Caller, Ct), Ct));

        await harness.SetStatusAsync(uri, PolicyStatus.Retired);
        Release();

        await holding;
        var error = await Should.ThrowAsync<PolicyGridException>(() => queued);
        (error.Status, error.Code).ShouldBe((410, ErrorCodes.Retired));
        error.Message.ShouldEndWith("it did not run");
        File.Exists(Path.Combine(dir, "managed")).ShouldBeFalse("the queued action must not run on a retired policy");
    }

    [Fact]
    public async Task A_queued_call_whose_policy_is_still_runnable_runs_when_other_policies_were_written_meanwhile()
    {
        var (holding, queued) = await QueueBehindSlowCallAsync(() => Mark("still-active"));

        // Another policy written (the catalog's change count moves): the queued call is checked again, and still runs.
        var other = await harness.AddSourceAsync("queued-other", Source);
        await harness.SetStatusAsync(other, PolicyStatus.Retired);
        // And its own policy updated without retiring it: it runs the revision it was checked against.
        await harness.SetStatusAsync(uri, PolicyStatus.Deprecated);
        Release();

        await holding;
        (await queued).Output["ran"]!.GetValue<string>().ShouldBe("still-active");
        File.Exists(Path.Combine(dir, "still-active")).ShouldBeTrue();
    }
}
