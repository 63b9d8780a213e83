using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>Policies of different names never share an interpreter: one cannot read or patch another in memory.</summary>
public sealed class PolicyIsolationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Holds a secret from its settings, and answers its process id.
    private static readonly BundleDirectory Victim = TestBundles.FromSource("""
        import os

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.api_key = settings.get("api_key")
            def eval(self, parameters, input_data, context):
                return {"pid": os.getpid(), "allowed": False}
        """);

    // Looks through its interpreter for other policies' objects: reads their secrets and makes them allow everything.
    private static readonly BundleDirectory Spy = TestBundles.FromSource("""
        import gc, os

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                found = []
                for obj in gc.get_objects():
                    if type(obj).__name__ == "AIOSv1PolicyRule" and type(obj) is not AIOSv1PolicyRule and hasattr(obj, "api_key"):
                        found.append(obj.api_key)
                        type(obj).eval = lambda self, p, i, c: {"pid": os.getpid(), "allowed": True}
                return {"pid": os.getpid(), "found": found}
        """);

    private static Task<JsonObject> Eval(PythonWorkerPool pool, string uri, BundleDirectory bundle, JsonObject? settings = null) =>
        PoolFixture.EvalAsync(pool, uri, bundle, settings: settings);

    private static async Task<(JsonObject Spy, JsonObject VictimAfter)> SpyOnVictim(PythonWorkerPool pool)
    {
        await Eval(pool, "victim:1.0-a", Victim, new JsonObject { ["api_key"] = "s3cret" });
        var spy = await Eval(pool, "spy:1.0-a", Spy);
        return (spy, await Eval(pool, "victim:1.0-a", Victim, new JsonObject { ["api_key"] = "s3cret" }));
    }

    [Fact]
    public async Task A_policy_finds_neither_the_secrets_nor_the_code_of_another_policy_in_its_interpreter()
    {
        await using var pool = PoolFixture.NewPool(workers: 1);

        var (spy, victim) = await SpyOnVictim(pool);

        spy["found"]!.AsArray().ShouldBeEmpty();
        spy["pid"]!.GetValue<int>().ShouldNotBe(victim["pid"]!.GetValue<int>());
        victim["allowed"]!.GetValue<bool>().ShouldBeFalse();
    }

    [Fact]
    public async Task With_isolation_off_policies_share_workers_and_one_can_read_and_patch_another()
    {
        // What IsolatePolicies=false means, shown: only for servers whose policies all come from one trusted author.
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.IsolatePolicies = false);

        var (spy, victim) = await SpyOnVictim(pool);

        spy["found"]!.AsArray().Select(n => n!.GetValue<string>()).ShouldBe(["s3cret"]);
        victim["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Versions_of_one_policy_share_its_workers_and_the_least_recently_used_idle_policy_makes_room()
    {
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.MaxResidentPolicies = 2);

        var first = await Eval(pool, "victim:1.0-a", Victim);
        (await Eval(pool, "victim:2.0-a", Victim))["pid"]!.GetValue<int>().ShouldBe(first["pid"]!.GetValue<int>());
        await Eval(pool, "other:1.0-a", Victim);
        pool.ResidentGroups.ShouldBe(2);

        await Eval(pool, "third:1.0-a", Victim); // "victim" was used least recently: its workers stop
        pool.ResidentGroups.ShouldBe(2);
        var again = await Eval(pool, "victim:1.0-a", Victim);
        again["pid"]!.GetValue<int>().ShouldNotBe(first["pid"]!.GetValue<int>());
        again["allowed"]!.GetValue<bool>().ShouldBeFalse();
    }
}

public sealed class ResidentPolicyLimitTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_new_policy_is_refused_with_429_while_every_resident_policy_is_busy_and_runs_once_one_is_idle()
    {
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.MaxResidentPolicies = 1);
        var bundle = SleepingPolicy.Bundle();
        Task<JsonObject> Eval(string uri, double sleep) => PoolFixture.EvalAsync(pool, uri, bundle, new JsonObject { ["sleep"] = sleep }, deadlineSeconds: 10);

        var busy = Eval("busy:1.0-a", 1.5);
        await Task.Delay(300, Ct);
        var refused = await Should.ThrowAsync<PolicyGrid.Core.Errors.PolicyGridException>(() => Eval("other:1.0-a", 0));
        refused.Status.ShouldBe(429);
        refused.Message.ShouldContain("resident");
        refused.RetryAfterSeconds.ShouldNotBeNull();

        (await busy)["done"]!.GetValue<bool>().ShouldBeTrue();
        (await Eval("other:1.0-a", 0))["done"]!.GetValue<bool>().ShouldBeTrue();
    }
}

public sealed class InstanceReleaseTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Releasing_an_instance_that_waits_behind_a_slow_call_leaves_the_other_policies_free_to_make_room()
    {
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.MaxResidentPolicies = 2);
        var bundle = SleepingPolicy.Bundle();
        Task<JsonObject> Eval(string uri, double sleep, string? key = null) =>
            PoolFixture.EvalAsync(pool, uri, bundle, new JsonObject { ["sleep"] = sleep }, key: key, deadlineSeconds: 10);
        await Eval("idle:1.0-a", 0);                        // resident, and idle from now on: the one to make room
        await Eval("busy:1.0-a", 0, key: "function:f#0");   // a function's instance, on busy's only worker

        var slow = Eval("busy:1.0-a", 1.5);
        await Task.Delay(300, Ct);
        var release = pool.ReleaseAsync("function:f#0", Ct); // the function removed: its unload waits behind the slow call

        // The release held every resident policy until its unload was answered, so none could make room: a new
        // policy (its first call, or its dry load at registration) was refused 429 "all ... policies are busy".
        (await Eval("fresh:1.0-a", 0))["done"]!.GetValue<bool>().ShouldBeTrue();
        await release;
        (await slow)["done"]!.GetValue<bool>().ShouldBeTrue();
    }
}

public sealed class WorkerNetworkTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Connects to a port on this machine's loopback, as a policy probing the server's API or a sidecar would.
    private static readonly BundleDirectory Prober = TestBundles.FromSource("""
        import socket

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                try:
                    with socket.create_connection(("127.0.0.1", input_data["port"]), timeout=2) as s:
                        return {"reached": s.recv(16).decode()}
                except OSError as exc:
                    return {"error": type(exc).__name__ + ": " + str(exc)}
        """);

    private static async Task<JsonObject> Probe(bool denyNetwork, int port)
    {
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.DenyNetwork = denyNetwork);
        return await PoolFixture.EvalAsync(pool, "probe:1.0-a", Prober, new JsonObject { ["port"] = port }, deadlineSeconds: 10);
    }

    [Fact]
    public async Task With_the_network_denied_a_policy_cannot_reach_a_service_on_this_machine_that_it_reaches_otherwise()
    {
        if (Environment.UserName != "root") Assert.Skip("needs root (CAP_SYS_ADMIN) for the workers' network namespaces");
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        using var serving = new CancellationTokenSource();
        var server = Task.Run(async () =>
        {
            while (!serving.IsCancellationRequested)
            {
                using var client = await listener.AcceptTcpClientAsync(serving.Token);
                await client.GetStream().WriteAsync("secret-api"u8.ToArray(), serving.Token);
            }
        }, CancellationToken.None);

        (await Probe(denyNetwork: false, port))["reached"]!.GetValue<string>().ShouldBe("secret-api");
        var denied = await Probe(denyNetwork: true, port);
        denied["reached"].ShouldBeNull();
        denied["error"]!.GetValue<string>().ShouldContain("Network is unreachable");

        await serving.CancelAsync();
        try { await server; } catch (OperationCanceledException) { }
    }
}

public sealed class ResidentPolicyThrashTests
{
    [Fact]
    public async Task Policies_taking_each_others_place_within_seconds_bring_one_warning_naming_the_setting()
    {
        var logs = new CapturingLoggerProvider();
        var options = PoolFixture.TestOptions(workers: 1);
        options.MaxResidentPolicies = 1;
        await using var pool = new PythonWorkerPool(options, logs.CreateLogger<PythonWorkerPool>());
        var bundle = TestBundles.AnswersOk();

        await PoolFixture.EvalAsync(pool, "first:1.0-a", bundle);
        logs.Entries.ShouldNotContain(e => e.Message.Contains("MaxResidentPolicies"));
        for (var i = 0; i < 3; i++)
        {
            await PoolFixture.EvalAsync(pool, "second:1.0-a", bundle);
            await PoolFixture.EvalAsync(pool, "first:1.0-a", bundle);
        }

        logs.Entries.Count(e => e.Level == Microsoft.Extensions.Logging.LogLevel.Warning && e.Message.Contains("PolicyGrid:Runtime:Pool:MaxResidentPolicies")).ShouldBe(1);
    }
}

/// <summary>A policy whose eval sleeps <c>input_data.sleep</c> seconds, then answers <c>{"done": true}</c>.</summary>
internal static class SleepingPolicy
{
    public static BundleDirectory Bundle() => TestBundles.FromSource("""
        import time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                time.sleep(input_data.get("sleep", 0))
                return {"done": True}
        """);
}
