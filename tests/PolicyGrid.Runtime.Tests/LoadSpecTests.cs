using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// A warm instance's load spec (bundle, settings, parameters — possibly large) reaches a worker once, with the
/// first call of that instance there; later calls carry only their own arguments, and eval gets the parameters
/// the worker keeps with the instance. A worker that dropped the instance asks for the spec and the call goes
/// again with it, so callers never see the difference.
/// </summary>
public sealed class LoadSpecTests : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly BundleDirectory Bundle = TestBundles.FromSource("""
        import os

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.calls = 0
                self.init_size = len(parameters.get("allow", []))

            def eval(self, parameters, input_data, context):
                self.calls += 1
                if input_data.get("mutate"):
                    parameters["allow"].append("added by eval")
                return {"calls": self.calls, "allowed": input_data["ip"] in parameters.get("allow", []),
                        "size": len(parameters.get("allow", [])), "init_size": self.init_size, "pid": os.getpid()}
        """);

    private PythonWorkerPool pool = null!;

    public async ValueTask InitializeAsync()
    {
        var options = PoolFixture.TestOptions(workers: 1);
        options.MaxInstancesPerWorker = 2;
        pool = new PythonWorkerPool(options, new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());
        await pool.StartAsync(Ct);
    }

    public async ValueTask DisposeAsync() => await pool.DisposeAsync();

    // 20,000 addresses: about 300 KB of parameters.
    private static readonly PolicyLoadSpec Large = new("allow:1.0-big", Bundle, [],
        new JsonObject { ["allow"] = new JsonArray([.. Enumerable.Range(0, 20_000).Select(i => (JsonNode)JsonValue.Create($"10.{i / 256 % 256}.{i % 256}.1"))]) });

    private static PolicyLoadSpec Small(string id) => new(id, Bundle, [], new JsonObject { ["allow"] = new JsonArray("10.0.0.1") });

    private async Task<JsonObject> EvalAsync(string key, PolicyLoadSpec load, JsonObject input, JsonObject? parameters = null)
    {
        var args = new JsonObject { ["input_data"] = input, ["context"] = new JsonObject() };
        if (parameters is not null) args["parameters"] = parameters;
        return (await pool.InvokeAsync(new PolicyInvocation(key, load, PolicyMethods.Eval, args, TimeSpan.FromSeconds(10)), Ct))!["result"]!.AsObject();
    }

    [Fact]
    public async Task Only_the_first_call_of_an_instance_carries_its_load_spec_and_every_call_sees_its_parameters()
    {
        var before = pool.LoadSpecsSent;
        for (var i = 1; i <= 20; i++)
        {
            var result = await EvalAsync("big", Large, new JsonObject { ["ip"] = "10.0.5.1" });
            result["calls"]!.GetValue<int>().ShouldBe(i);
            result["allowed"]!.GetValue<bool>().ShouldBeTrue();
            (result["size"]!.GetValue<int>(), result["init_size"]!.GetValue<int>()).ShouldBe((20_000, 20_000));
        }
        (pool.LoadSpecsSent - before).ShouldBe(1);
    }

    [Fact]
    public async Task A_stateful_instance_takes_one_round_trip_per_call_and_its_spec_once()
    {
        var load = new PolicyLoadSpec("counter:1.0-x", TestBundles.FromSource("""
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    self.count = 0
                def eval(self, parameters, input_data, context):
                    self.count += 1
                    return {"count": self.count}
                def get_state(self):
                    return {"count": self.count}
                def set_state(self, state):
                    self.count = state["count"]
            """), [], []);
        JsonObject? state = null;
        // One call, handing over the state the last one answered (to restore, should the instance be made anew).
        async Task<int> CountAsync()
        {
            var answer = await pool.InvokeWithStateAsync(new PolicyInvocation("counter", load, PolicyMethods.Eval,
                new JsonObject { ["input_data"] = new JsonObject(), ["context"] = new JsonObject() }, TimeSpan.FromSeconds(10), state), Ct);
            state = answer.State!.AsObject();
            return answer.Value!["result"]!["count"]!.GetValue<int>();
        }
        var (trips, specs) = (pool.RoundTrips, pool.LoadSpecsSent);
        for (var i = 1; i <= 10; i++) (await CountAsync()).ShouldBe(i);
        (pool.RoundTrips - trips, pool.LoadSpecsSent - specs).ShouldBe((10L, 1L));

        // The worker drops the instance (it keeps two): the next call's state goes with the spec sent again,
        // and the new instance carries on from it.
        await EvalAsync("other-1", Small("o:1.0-1"), new JsonObject { ["ip"] = "x" });
        await EvalAsync("other-2", Small("o:1.0-2"), new JsonObject { ["ip"] = "x" });
        (await CountAsync()).ShouldBe(11);
    }

    [Fact]
    public async Task Parameters_given_with_a_call_win_over_the_instances_own()
    {
        (await EvalAsync("given", Small("given:1.0-a"), new JsonObject { ["ip"] = "10.0.0.1" }))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        var overridden = await EvalAsync("given", Small("given:1.0-a"), new JsonObject { ["ip"] = "10.0.0.1" }, new JsonObject { ["allow"] = new JsonArray("10.9.9.9") });
        (overridden["allowed"]!.GetValue<bool>(), overridden["size"]!.GetValue<int>()).ShouldBe((false, 1));
        // What eval was handed for one call is not what the next call gets.
        (await EvalAsync("given", Small("given:1.0-a"), new JsonObject { ["ip"] = "10.0.0.1" }))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task The_parameters_eval_gets_are_the_instances_own_as_in_the_sdks_so_eval_must_not_change_them()
    {
        // Like the SDKs' in-process evaluators: one parameters object per instance. A policy that changes it
        // sees its change in its next call, and its __init__ copy is untouched.
        await EvalAsync("mutating", Small("mutating:1.0-a"), new JsonObject { ["ip"] = "10.0.0.1", ["mutate"] = true });
        var next = await EvalAsync("mutating", Small("mutating:1.0-a"), new JsonObject { ["ip"] = "10.0.0.1" });
        (next["size"]!.GetValue<int>(), next["init_size"]!.GetValue<int>()).ShouldBe((2, 1));
    }

    [Fact]
    public async Task An_instance_the_worker_dropped_is_made_again_from_the_spec_and_the_call_answers_as_usual()
    {
        var first = await EvalAsync("a", Small("a:1.0-x"), new JsonObject { ["ip"] = "10.0.0.1" });
        first["calls"]!.GetValue<int>().ShouldBe(1);
        (await EvalAsync("a", Small("a:1.0-x"), new JsonObject { ["ip"] = "10.0.0.1" }))["calls"]!.GetValue<int>().ShouldBe(2);
        // The worker keeps two instances: two more keys (versions of the same policy, so the same workers) push "a" out.
        await EvalAsync("b", Small("a:2.0-x"), new JsonObject { ["ip"] = "10.0.0.1" });
        await EvalAsync("c", Small("a:3.0-x"), new JsonObject { ["ip"] = "10.0.0.1" });
        var sent = pool.LoadSpecsSent;

        var again = await EvalAsync("a", Small("a:1.0-x"), new JsonObject { ["ip"] = "10.0.0.1" });

        again["calls"]!.GetValue<int>().ShouldBe(1, "a new instance, made from the spec sent again");
        again["allowed"]!.GetValue<bool>().ShouldBeTrue();
        again["pid"]!.GetValue<int>().ShouldBe(first["pid"]!.GetValue<int>(), "the same worker: asking for the spec is not a failure");
        (pool.LoadSpecsSent - sent).ShouldBe(1);
    }

    [Fact]
    public async Task A_spec_that_fails_to_load_fails_every_call_with_the_load_error_not_a_protocol_one()
    {
        var broken = new PolicyLoadSpec("broken:1.0-x", TestBundles.FromSource("""
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    raise RuntimeError("cannot start")
            """), [], []);
        for (var i = 0; i < 3; i++)
        {
            var error = await Should.ThrowAsync<PolicyLoadException>(() => EvalAsync("broken", broken, new JsonObject { ["ip"] = "x" }));
            error.Message.ShouldContain("RuntimeError: cannot start");
        }
    }
}
