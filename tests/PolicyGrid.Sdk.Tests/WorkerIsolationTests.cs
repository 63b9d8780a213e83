using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;

namespace PolicyGrid.Sdk.Tests;

/// <summary>The process-isolated local mode: the runtime's worker pool gives a deadline and a crash boundary.</summary>
public sealed class WorkerIsolationTests
{
    private const string Misbehaving = """
        import os
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.allow = list(parameters.get("local_allowlist", []))
            def eval(self, parameters, input_data, context):
                if input_data.get("ip") == "loop":
                    while True:
                        pass
                if input_data.get("ip") == "crash":
                    os._exit(3)
                if input_data.get("ip") == "nap":
                    import time
                    time.sleep(0.6)
                context["calls"] = context.get("calls", 0) + 1
                return {"allowed": input_data.get("ip") in self.allow, "calls": context["calls"], "pid": os.getpid()}
        """;

    private static LocalPolicyEvaluatorOptions Options() => new()
    {
        PolicyRuleUri = EvaluatorTests.Uri,
        Isolation = LocalIsolation.WorkerProcess,
        CallDeadline = TimeSpan.FromSeconds(1),
        WorkerPool = new WorkerPoolOptions { Workers = 1, WorkDirectory = Path.Combine(Path.GetTempPath(), "pg-sdk-workers") },
    };

    private static JsonObject Ip(string ip) => new() { ["ip"] = ip };

    [Fact]
    public async Task Runs_the_policy_in_a_worker_process_with_context_kept_between_calls()
    {
        using var registry = new LoopbackRegistry(EvaluatorTests.Document(), TestBundles.Zip(("code/function.py", Misbehaving)));
        await using var ev = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(registry.Url), Options(), TestContext.Current.CancellationToken);
        var first = await ev.ExecutePolicyRuleAsync(Ip("10.0.0.1"), ct: TestContext.Current.CancellationToken);
        first["allowed"]!.GetValue<bool>().ShouldBeTrue();
        first["pid"]!.GetValue<int>().ShouldNotBe(Environment.ProcessId);
        ev.ExecutePolicyRule(Ip("10.9.9.9"))["calls"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task A_policy_past_its_deadline_answers_504_and_the_next_call_works()
    {
        using var registry = new LoopbackRegistry(new JsonObject(EvaluatorTests.Document().Where(p => p.Key != "policy_input_schema")
            .Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone()))), TestBundles.Zip(("code/function.py", Misbehaving)));
        await using var ev = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(registry.Url), Options(), TestContext.Current.CancellationToken);
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => ev.ExecutePolicyRuleAsync(Ip("loop"), ct: TestContext.Current.CancellationToken));
        (e.Status, e.Code).ShouldBe((504, "policy_timeout"));
        var crash = await Should.ThrowAsync<PolicyGridApiException>(() => ev.ExecutePolicyRuleAsync(Ip("crash"), ct: TestContext.Current.CancellationToken));
        (crash.Status, crash.Code).ShouldBe((422, "policy_crashed"));
        (await ev.ExecutePolicyRuleAsync(Ip("10.0.0.1"), ct: TestContext.Current.CancellationToken))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Without_a_CallDeadline_the_policy_s_own_timeout_seconds_is_the_deadline_as_on_the_executors()
    {
        // It was CallDeadline's 5 s always: a policy declaring resource_estimates.timeout_seconds 0.3 answered 504 remotely
        // and ran on locally.
        var document = EvaluatorTests.Document();
        document.Remove("policy_input_schema");
        document["resource_estimates"] = new JsonObject { ["timeout_seconds"] = 0.3 };
        using var registry = new LoopbackRegistry(document, TestBundles.Zip(("code/function.py", Misbehaving)));
        var pool = new WorkerPoolOptions { Workers = 1, WorkDirectory = Path.Combine(Path.GetTempPath(), "pg-sdk-workers") };
        await using (var ev = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(registry.Url),
            new LocalPolicyEvaluatorOptions { PolicyRuleUri = EvaluatorTests.Uri, Isolation = LocalIsolation.WorkerProcess, WorkerPool = pool },
            TestContext.Current.CancellationToken))
        {
            var e = await Should.ThrowAsync<PolicyGridApiException>(() => ev.ExecutePolicyRuleAsync(Ip("nap"), ct: TestContext.Current.CancellationToken));
            (e.Status, e.Code).ShouldBe((504, "policy_timeout"));
        }

        // A CallDeadline given wins over the policy's, as a call's timeout_seconds does on the executors.
        await using (var ev = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(registry.Url),
            new LocalPolicyEvaluatorOptions { PolicyRuleUri = EvaluatorTests.Uri, Isolation = LocalIsolation.WorkerProcess, WorkerPool = pool, CallDeadline = TimeSpan.FromSeconds(30) },
            TestContext.Current.CancellationToken))
        {
            (await ev.ExecutePolicyRuleAsync(Ip("nap"), ct: TestContext.Current.CancellationToken)).ContainsKey("allowed").ShouldBeTrue();
        }
    }

    [Fact]
    public async Task Context_survives_an_update_that_reloads_the_policy_and_dispose_ends_the_worker()
    {
        using var registry = new LoopbackRegistry(EvaluatorTests.Document(), TestBundles.Zip(("code/function.py", Misbehaving)));
        var ev = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(registry.Url), Options() with { RevalidateInterval = TimeSpan.FromHours(1) },
            TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("10.0.0.1"));
        registry.Update(d => d["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.9") });
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        var after = ev.ExecutePolicyRule(Ip("10.0.0.9"));
        after["allowed"]!.GetValue<bool>().ShouldBeTrue(); // the new parameters are in force
        after["calls"]!.GetValue<int>().ShouldBe(2); // and the count kept in context goes on, as on the servers
        using var worker = System.Diagnostics.Process.GetProcessById(after["pid"]!.GetValue<int>());
        await ev.DisposeAsync();
        await worker.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        worker.HasExited.ShouldBeTrue();
    }

    [Fact]
    public async Task A_cache_directory_the_worker_user_may_not_enter_is_named_not_taken_for_a_bundle_without_function_py()
    {
        if (Environment.UserName != "root") Assert.Skip("needs root: only then do workers run as another uid");
        // A private directory (mode 700, as Directory.CreateTempSubdirectory and /root give): the worker, dropped to an
        // unprivileged uid, cannot reach the bundle in it, and the evaluator failed with "the bundle has no code/function.py".
        var home = Directory.CreateTempSubdirectory("pg-sdk-private-");
        try
        {
            using var registry = new LoopbackRegistry(EvaluatorTests.Document(), TestBundles.Zip(("code/function.py", Misbehaving)));
            var e = await Should.ThrowAsync<PolicyGridApiException>(() => LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(registry.Url),
                Options() with { CacheDirectory = Path.Combine(home.FullName, "cache") }, TestContext.Current.CancellationToken));

            e.Reason.ShouldNotContain("has no code/function.py");
            e.Reason.ShouldContain($"permission denied at {home.FullName}");
            e.Reason.ShouldContain("CacheDirectory");
        }
        finally
        {
            home.Delete(recursive: true);
        }
    }
}
