using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Functions;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// A function call (or management action) gets its instance's turn at once, but then waits for the policy's only worker,
/// busy with another function of the same policy (they share its workers). Still waiting when its caller's budget (a
/// node's <c>X-PolicyGrid-Timeout-Ms</c>) runs out, or when the policy is retired meanwhile, it is not started. Before,
/// it ran once the worker was free (after its caller had been told it failed, or on a retired policy), and counted.
/// </summary>
public sealed class FunctionWaitingForAWorkerTests : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // One worker for the policy, and the release file under the host's /tmp (see FunctionsApiTests).
    private readonly GridServer server = new() { PythonWorkers = 1, Settings = { ["PolicyGrid:Runtime:Pool:PrivateTemp"] = "false" } };
    private HttpClient client = null!;
    private string shared = "";
    private string policy = "";

    public async ValueTask InitializeAsync()
    {
        client = server.CreateClient();
        policy = await server.RegisterPolicyAsync("counting", CountingPolicy.Source);
        foreach (var name in new[] { "slow", "budgeted", "queued" })
        {
            var deployed = await client.Send(HttpMethod.Post, "/function/deployments/create/local",
                new JsonObject { ["name"] = name, ["policy_rule_uri"] = policy });
            deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        }
        shared = Directory.CreateTempSubdirectory("pg-fn-waiting-").FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(shared, (UnixFileMode)0b111_101_101);
    }

    public async ValueTask DisposeAsync()
    {
        await server.DisposeAsync();
        Directory.Delete(shared, recursive: true);
    }

    private static async Task Until(Func<bool> condition, string what)
    {
        var until = DateTime.UtcNow.AddSeconds(20);
        while (!condition() && DateTime.UtcNow < until) await Task.Delay(5, Ct);
        condition().ShouldBeTrue(what);
    }

    [Fact]
    public async Task A_call_waiting_for_a_worker_busy_with_another_function_past_its_budget_is_not_started()
    {
        var pool = server.Service<PythonWorkerPool>();
        var host = server.Service<LocalFunctionHost>();
        var release = Path.Combine(shared, "release");
        var held = client.Send(HttpMethod.Post, "/function/call_function/slow", new JsonObject { ["hold"] = release });
        // Taken from the queue (sent, or waiting for its worker to start), not merely admitted: a call queued while it is
        // still there goes in the same batch and would run behind it whatever the test then does.
        await Until(() => pool.Status is { Admitted: 1, Queued: 0 }, "the slow function's call should hold the only worker");

        var clock = new BudgetClock();
        var budget = new CallBudget(TimeSpan.FromMilliseconds(500), "X-PolicyGrid-Timeout-Ms: 500", clock);
        var budgeted = host.CallAsync("budgeted", new JsonObject(), budget, Ct);
        await Until(() => pool.Status.Admitted == 2, "the budgeted call should be waiting for the worker");
        clock.Start();

        var first = await Task.WhenAny(budgeted, Task.Delay(TimeSpan.FromSeconds(30), Ct));
        File.WriteAllText(release, "go");
        first.ShouldBeSameAs(budgeted, "the budgeted call waited for the worker past its budget");
        var error = await Should.ThrowAsync<PolicyGridException>(() => budgeted);
        (error.Status, error.Code).ShouldBe((504, ErrorCodes.PolicyTimeout));
        error.Message.ShouldContain("call of function budgeted was not started");
        error.Message.ShouldEndWith("so it has no effect");
        (await held).Status.ShouldBe(200);

        // It never ran: the function's next call is its first, on the instance and in its context.
        var next = await client.Send(HttpMethod.Post, "/function/call_function/budgeted", new JsonObject());
        next.Status.ShouldBe(200, next.Body?.ToJsonString());
        next.Data!["count"]!.GetValue<int>().ShouldBe(1);
        next.Data!["evals"]!.GetValue<int>().ShouldBe(1);
    }

    private async Task SetStatusAsync(string status) =>
        (await client.Send(HttpMethod.Put, $"/policy/{policy}", new JsonObject { ["$set"] = new JsonObject { ["status"] = status } })).Status.ShouldBe(200);

    [Fact]
    public async Task A_call_and_an_action_waiting_for_a_worker_busy_with_another_function_do_not_run_once_the_policy_is_retired()
    {
        var pool = server.Service<PythonWorkerPool>();
        var host = server.Service<LocalFunctionHost>();
        var release = Path.Combine(shared, "release");
        var held = client.Send(HttpMethod.Post, "/function/call_function/slow", new JsonObject { ["hold"] = release });
        // Taken from the queue (sent, or waiting for its worker to start), not merely admitted: a call queued while it is
        // still there goes in the same batch and would run behind it whatever the test then does.
        await Until(() => pool.Status is { Admitted: 1, Queued: 0 }, "the slow function's call should hold the only worker");

        var queued = Task.Run(() => host.CallAsync("queued", new JsonObject(), Ct), Ct);
        await Until(() => pool.Status.Queued == 1, "the call should be waiting for the worker");
        await SetStatusAsync("retired");
        File.WriteAllText(release, "go");

        (await held).Status.ShouldBe(200, "the call already running ends as it began");
        var error = await Should.ThrowAsync<PolicyGridException>(() => queued);
        (error.Status, error.Code).ShouldBe((410, ErrorCodes.Retired));
        error.Message.ShouldContain($"function 'queued' runs policy '{policy}', which was retired while this call waited for a policy worker");
        error.Message.ShouldContain("so it did not run");

        // The same for a management action, queued behind the slow function's next call.
        await SetStatusAsync("active");
        File.Delete(release);
        held = client.Send(HttpMethod.Post, "/function/call_function/slow", new JsonObject { ["hold"] = release });
        await Until(() => pool.Status is { Admitted: 1, Queued: 0 }, "the slow function's call should hold the only worker again");
        var managed = Task.Run(() => host.ManageAsync("queued", "set", new JsonObject { ["count"] = 100 }, Ct), Ct);
        await Until(() => pool.Status.Queued == 1, "the action should be waiting for the worker");
        await SetStatusAsync("retired");
        File.WriteAllText(release, "go");
        (await held).Status.ShouldBe(200);
        (await Should.ThrowAsync<PolicyGridException>(() => managed)).Status.ShouldBe(410);

        // Neither ran: the function's next call is its first, on the instance and in its context.
        await SetStatusAsync("active");
        var next = await client.Send(HttpMethod.Post, "/function/call_function/queued", new JsonObject());
        next.Status.ShouldBe(200, next.Body?.ToJsonString());
        next.Data!["count"]!.GetValue<int>().ShouldBe(1);
        next.Data!["evals"]!.GetValue<int>().ShouldBe(1);
    }
}
