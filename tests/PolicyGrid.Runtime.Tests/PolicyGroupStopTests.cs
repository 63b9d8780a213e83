using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>The workers of a policy that is gone (deleted, retired) or unused for long are stopped, never under a call.</summary>
public sealed class PolicyGroupStopTests
{
    private static readonly BundleDirectory Sleeper = TestBundles.FromSource("""
        import os, time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                time.sleep(input_data.get("sleep", 0))
                return {"pid": os.getpid()}
        """);

    private static async Task<int> Pid(PythonWorkerPool pool, string uri, double sleep = 0) =>
        (await PoolFixture.EvalAsync(pool, uri, Sleeper, new JsonObject { ["sleep"] = sleep }, deadlineSeconds: 10))["pid"]!.GetValue<int>();

    private static bool Live(PythonWorkerPool pool, int pid) => pool.LiveWorkers().Any(w => w.Pid == pid);

    [Fact]
    public async Task Stopping_a_gone_policy_lets_its_call_in_flight_finish_then_its_workers_go_and_its_next_call_starts_afresh()
    {
        await using var pool = PoolFixture.NewPool(workers: 1);
        var pid = await Pid(pool, "gone:1.0-a");
        var other = await Pid(pool, "other:1.0-a");

        var running = Pid(pool, "gone:1.0-a", sleep: 1); // using the group from this call on (Acquire is synchronous)
        (await pool.StopPolicyAsync("gone")).ShouldBeTrue();

        pool.ResidentGroups.ShouldBe(1);
        (await running).ShouldBe(pid); // finished on its worker, not killed under it
        Live(pool, pid).ShouldBeFalse();
        Live(pool, other).ShouldBeTrue();
        (await Pid(pool, "other:1.0-a")).ShouldBe(other);

        var again = await Pid(pool, "gone:2.0-a");
        again.ShouldNotBe(pid);
        Live(pool, again).ShouldBeTrue();
        (await pool.StopPolicyAsync("never_called")).ShouldBeFalse();
    }

    [Fact]
    public async Task An_idle_policy_stops_right_away_and_with_isolation_off_nothing_is_stopped()
    {
        await using (var pool = PoolFixture.NewPool(workers: 1))
        {
            var pid = await Pid(pool, "idle:1.0-a");
            (await pool.StopPolicyAsync("idle")).ShouldBeTrue();
            Live(pool, pid).ShouldBeFalse();
            pool.ResidentGroups.ShouldBe(0);
        }
        await using (var shared = PoolFixture.NewPool(workers: 1, o => o.IsolatePolicies = false))
        {
            var pid = await Pid(shared, "one:1.0-a");
            (await shared.StopPolicyAsync("one")).ShouldBeFalse(); // the one shared group runs every policy
            Live(shared, pid).ShouldBeTrue();
        }
    }

    [Fact]
    public async Task A_policy_unused_for_IdleStopAfter_loses_its_workers_but_not_while_a_call_uses_them()
    {
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.IdleStopAfter = TimeSpan.FromHours(1));
        var idle = await Pid(pool, "idle:1.0-a");
        var busy = await Pid(pool, "busy:1.0-a");
        var later = Environment.TickCount64 + (long)TimeSpan.FromHours(1).TotalMilliseconds;

        pool.StopIdle(Environment.TickCount64).ShouldBe(0); // used just now
        var running = Pid(pool, "busy:1.0-a", sleep: 1);
        pool.StopIdle(later).ShouldBe(1);

        Live(pool, idle).ShouldBeFalse();
        (await running).ShouldBe(busy);
        Live(pool, busy).ShouldBeTrue();
        (await Pid(pool, "idle:1.0-a")).ShouldNotBe(idle);
    }

    [Fact]
    public async Task A_group_that_ran_a_long_lived_instance_is_not_stopped_for_being_idle()
    {
        // A Type 4 replica or an SDK evaluator's instance holds what its calls did: an idle stop would lose it.
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.IdleStopAfter = TimeSpan.FromHours(1));
        var plain = await Pid(pool, "plain:1.0-a");
        var warm = (await pool.InvokeAsync(new PolicyInvocation("fn:warm#0", new PolicyLoadSpec("warm:1.0-a", Sleeper, [], []), PolicyMethods.Eval,
            new JsonObject { ["parameters"] = new JsonObject(), ["input_data"] = new JsonObject(), ["context"] = new JsonObject() },
            TimeSpan.FromSeconds(10)) { KeepsWarm = true }, TestContext.Current.CancellationToken))!["result"]!["pid"]!.GetValue<int>();

        pool.StopIdle(Environment.TickCount64 + (long)TimeSpan.FromHours(2).TotalMilliseconds).ShouldBe(1);

        Live(pool, plain).ShouldBeFalse();
        Live(pool, warm).ShouldBeTrue();
    }

    [Fact]
    public void IdleStopAfter_below_zero_is_refused_naming_the_setting()
    {
        var error = Should.Throw<ArgumentOutOfRangeException>(() => PoolFixture.NewPool(workers: 1, o => o.IdleStopAfter = TimeSpan.FromSeconds(-1)));
        error.Message.ShouldContain("IdleStopAfter");
    }
}
