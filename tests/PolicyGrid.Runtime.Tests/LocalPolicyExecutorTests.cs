using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

public sealed class LocalPolicyExecutorTests : IAsyncLifetime
{
    private readonly ExecutorHarness harness = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly CallerIdentity Alice = new("alice-token");

    public ValueTask InitializeAsync() => new(harness.Pool.StartAsync(Ct));
    public ValueTask DisposeAsync() => harness.DisposeAsync();

    private Task<PolicyResult> Run(string uri, JsonObject input, JsonObject? parameters = null, string? contextKey = null, double? timeout = null, JsonObject? settings = null) =>
        harness.Executor.ExecuteAsync(new ExecutionRequest(uri, input, parameters, settings, contextKey, timeout), Alice, Ct);

    [Fact]
    public async Task Ip_allowlist_answers_as_in_the_contract_worked_example()
    {
        var uri = await harness.AddSampleAsync("ip_allowlist");
        uri.ShouldBe("ip_allowlist:1.0-beta");
        var parameters = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1") };

        var allowed = await Run(uri, new JsonObject { ["ip"] = "10.0.0.1" }, parameters);
        allowed.Output["allowed"]!.GetValue<bool>().ShouldBeTrue();
        allowed.Output["reason"]!.GetValue<string>().ShouldBe("allowed");
        allowed.Output["input_data"]!["ip"]!.GetValue<string>().ShouldBe("10.0.0.1");
        allowed.Deprecated.ShouldBeFalse();
        // The API wraps the answer in its envelope: it must not belong to another JSON tree.
        new JsonObject { ["success"] = true, ["data"] = allowed.Output }.ToJsonString().ShouldContain("\"allowed\":true");

        var denied = await Run(uri, new JsonObject { ["ip"] = "10.9.9.9" }, parameters);
        denied.Output["allowed"]!.GetValue<bool>().ShouldBeFalse();
        denied.Output["reason"]!.GetValue<string>().ShouldBe("denied");
    }

    [Fact]
    public async Task Call_parameters_are_merged_over_stored_ones_key_by_key()
    {
        var uri = await harness.AddSampleAsync("config_validator");
        var input = new JsonObject { ["name"] = " Checkout ", ["image"] = "registry.example.com/shop/checkout", ["replicas"] = 30, ["env"] = new JsonObject { ["log_level"] = 1 } };
        var stored = await Run(uri, input);
        stored.Output["valid"]!.GetValue<bool>().ShouldBeTrue();
        var config = stored.Output["config"]!;
        config["name"]!.GetValue<string>().ShouldBe("checkout");
        config["image"]!.GetValue<string>().ShouldBe("registry.example.com/shop/checkout:latest");
        config["replicas"]!.GetValue<int>().ShouldBe(10);
        config["env"]!["LOG_LEVEL"]!.GetValue<string>().ShouldBe("1");

        // Only max_replicas is given: allowed_registries keeps its stored value.
        var overridden = await Run(uri, (JsonObject)input.DeepClone(), new JsonObject { ["max_replicas"] = 50 });
        overridden.Output["config"]!["replicas"]!.GetValue<int>().ShouldBe(30);
        overridden.Output["valid"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Unknown_policy_is_404_and_a_malformed_uri_is_400()
    {
        var missing = await Should.ThrowAsync<PolicyGridException>(() => Run("nope:1.0-x", []));
        missing.Status.ShouldBe(404);
        missing.Code.ShouldBe("not_found");
        var malformed = await Should.ThrowAsync<PolicyGridException>(() => Run("no-colon-here", []));
        malformed.Status.ShouldBe(400);
        malformed.Message.ShouldContain("policy_rule_uri");
    }

    [Fact]
    public async Task Retired_policy_is_410_and_deprecated_still_runs_flagged()
    {
        var uri = await harness.AddSampleAsync("ip_allowlist");
        await harness.SetStatusAsync(uri, "deprecated");
        var deprecated = await Run(uri, new JsonObject { ["ip"] = "10.0.0.1" });
        deprecated.Deprecated.ShouldBeTrue();
        deprecated.Output["allowed"]!.GetValue<bool>().ShouldBeTrue();

        await harness.SetStatusAsync(uri, "retired");
        var retired = await Should.ThrowAsync<PolicyGridException>(() => Run(uri, new JsonObject { ["ip"] = "10.0.0.1" }));
        retired.Status.ShouldBe(410);
        retired.Code.ShouldBe("retired");
    }

    [Fact]
    public async Task Bad_overrides_and_bad_input_are_400_naming_the_field()
    {
        var uri = await harness.AddSampleAsync("ip_allowlist");
        var badParameter = await Should.ThrowAsync<PolicyGridException>(() =>
            Run(uri, new JsonObject { ["ip"] = "10.0.0.1" }, new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1", "not-an-ip") }));
        badParameter.Status.ShouldBe(400);
        badParameter.Code.ShouldBe("validation_failed");
        badParameter.Message.ShouldContain("parameters.local_allowlist[1]");

        var badSetting = await Should.ThrowAsync<PolicyGridException>(() =>
            Run(uri, new JsonObject { ["ip"] = "10.0.0.1" }, settings: new JsonObject { ["remote_allowlist_url"] = "ftp://x" }));
        badSetting.Message.ShouldContain("settings.remote_allowlist_url");

        var missingInput = await Should.ThrowAsync<PolicyGridException>(() => Run(uri, new JsonObject { ["addr"] = "10.0.0.1" }));
        missingInput.Status.ShouldBe(400);
        missingInput.Message.ShouldContain("input_data.ip");

        var badInput = await Should.ThrowAsync<PolicyGridException>(() => Run(uri, new JsonObject { ["ip"] = 42 }));
        badInput.Message.ShouldContain("input_data.ip");

        var badTimeout = await Should.ThrowAsync<PolicyGridException>(() => Run(uri, new JsonObject { ["ip"] = "10.0.0.1" }, timeout: -1));
        badTimeout.Message.ShouldContain("timeout_seconds");

        // Nothing was wrong with the policy itself: it still answers.
        (await Run(uri, new JsonObject { ["ip"] = "10.0.0.1" })).Output["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    private const string Sleeper = """
        import time

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass

            def eval(self, parameters, input_data, context):
                time.sleep(input_data.get("sleep", 0))
                return {"slept": input_data.get("sleep", 0)}
        """;

    [Fact]
    public async Task Deadline_comes_from_the_call_else_the_policy_estimate()
    {
        var uri = await harness.AddSourceAsync("sleeper", Sleeper, d => d["resource_estimates"] = new JsonObject { ["timeout_seconds"] = 0.3 });
        var byEstimate = await Should.ThrowAsync<PolicyGridException>(() => Run(uri, new JsonObject { ["sleep"] = 2 }));
        byEstimate.Status.ShouldBe(504);
        byEstimate.Message.ShouldContain("0.3s");

        var byCall = await Run(uri, new JsonObject { ["sleep"] = 0.5 }, timeout: 5);
        byCall.Output["slept"]!.GetValue<double>().ShouldBe(0.5);

        var callShorter = await Should.ThrowAsync<PolicyGridException>(() => Run(uri, new JsonObject { ["sleep"] = 2 }, timeout: 0.2));
        callShorter.Code.ShouldBe("policy_timeout");

        // A deadline under a millisecond is printed as given, not rounded to "0s".
        var tiny = await Should.ThrowAsync<PolicyGridException>(() => Run(uri, new JsonObject { ["sleep"] = 2 }, timeout: 0.0001));
        tiny.Message.ShouldContain("deadline of 0.0001s");
    }

    private const string Shapeless = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass

            def eval(self, parameters, input_data, context):
                if input_data.get("list"):
                    return [1, 2]
                return {"verdict": "maybe"}
        """;

    [Fact]
    public async Task Output_schema_is_enforced_only_when_configured()
    {
        static void WithOutputSchema(JsonObject d) => d["policy_output_schema"] = new JsonObject { ["allowed"] = new JsonObject { ["type"] = "boolean", ["required"] = true } };
        var warnUri = await harness.AddSourceAsync("shapeless", Shapeless, WithOutputSchema);
        (await Run(warnUri, [])).Output["verdict"]!.GetValue<string>().ShouldBe("maybe");
        harness.Logs.Entries.ShouldContain(e => e.Message.Contains("does not match its policy_output_schema", StringComparison.Ordinal));

        var notADict = await Should.ThrowAsync<PolicyGridException>(() => Run(warnUri, new JsonObject { ["list"] = true }));
        notADict.Code.ShouldBe("policy_error");
        notADict.Message.ShouldContain("not a dict");

        await using var enforcing = new ExecutorHarness(o => o.Execution.OutputSchemaMode = OutputSchemaMode.Enforce);
        var enforceUri = await enforcing.AddSourceAsync("shapeless", Shapeless, WithOutputSchema);
        var error = await Should.ThrowAsync<PolicyGridException>(() =>
            enforcing.Executor.ExecuteAsync(new ExecutionRequest(enforceUri, []), Alice, Ct));
        error.Status.ShouldBe(422);
        error.Message.ShouldContain("result.allowed");
    }

    [Fact]
    public async Task Context_counts_across_calls_per_key_and_across_a_restart()
    {
        var uri = await harness.AddSampleAsync("rate_limiter", d => d["policy_parameters"] = new JsonObject { ["limit"] = 1000, ["window_seconds"] = 3600 });
        var input = new JsonObject { ["client_id"] = "alice" };
        for (var expected = 1; expected <= 3; expected++)
            (await Run(uri, (JsonObject)input.DeepClone())).Output["count"]!.GetValue<int>().ShouldBe(expected);

        // Another context key starts from nothing.
        (await Run(uri, (JsonObject)input.DeepClone(), contextKey: "tenant-b")).Output["count"]!.GetValue<int>().ShouldBe(1);

        await harness.RestartAsync();
        (await Run(uri, (JsonObject)input.DeepClone())).Output["count"]!.GetValue<int>().ShouldBe(4);
        (await Run(uri, (JsonObject)input.DeepClone(), contextKey: "tenant-b")).Output["count"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task Parallel_calls_on_one_context_key_are_serialized()
    {
        var uri = await harness.AddSampleAsync("rate_limiter", d => d["policy_parameters"] = new JsonObject { ["limit"] = 1000, ["window_seconds"] = 3600 });
        const int calls = 24;
        var results = await Task.WhenAll(Enumerable.Range(0, calls).Select(_ =>
            Task.Run(() => Run(uri, new JsonObject { ["client_id"] = "bob" }, contextKey: "shared"))));
        results.Select(r => r.Output["count"]!.GetValue<int>()).Order().ShouldBe(Enumerable.Range(1, calls));
        (await harness.Contexts.GetAsync("shared", Ct))!["windows"]!["bob"]!["count"]!.GetValue<int>().ShouldBe(calls);
    }

    [Fact]
    public async Task A_call_queued_behind_its_context_when_the_policy_is_retired_does_not_run()
    {
        var uri = await harness.AddSourceAsync("counter", """
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    context["runs"] = context.get("runs", 0) + 1
                    return {"runs": context["runs"]}
            """);
        // Seen changing its context: from now on its calls take the context's lock for the whole eval.
        (await Run(uri, [])).Output["runs"]!.GetValue<int>().ShouldBe(1);

        // The lock held here stands for a slow call of the same context: the next call is checked, then waits for it.
        Task<PolicyResult> queued;
        using (await harness.Locks.AcquireAsync(uri, Ct))
        {
            queued = Run(uri, []);
            await Until(() => queued.IsCompleted || harness.Locks.Users(uri) == 2);
            queued.IsCompleted.ShouldBeFalse($"the call did not wait for the context: {queued.Exception?.InnerException?.Message}");
            await harness.SetStatusAsync(uri, "retired");
        }

        var refused = await Should.ThrowAsync<PolicyGridException>(() => queued);
        refused.Status.ShouldBe(410);
        refused.Code.ShouldBe("retired");
        refused.Message.ShouldContain("was retired while this call waited for its turn");
        (await harness.Contexts.GetAsync(uri, Ct))!["runs"]!.GetValue<int>().ShouldBe(1, "the queued call ran");
    }

    private static async Task Until(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the condition never held");
            await Task.Delay(2, Ct);
        }
    }

    [Fact]
    public async Task Many_concurrent_calls_each_leave_one_decision()
    {
        var uri = await harness.AddSampleAsync("ip_allowlist");
        const int calls = 240;
        await Task.WhenAll(Enumerable.Range(0, calls).Select(i => Run(uri, new JsonObject { ["ip"] = $"10.0.{i / 200}.{i % 200}" })));
        var log = await harness.DecisionsAsync();
        log.Count.ShouldBe(calls);
        log.Select(d => d["input_sha256"]!.GetValue<string>()).Distinct().Count().ShouldBe(calls);
    }

    [Fact]
    public async Task An_update_to_the_stored_policy_applies_to_the_next_call()
    {
        var uri = await harness.AddSampleAsync("ip_allowlist");
        (await Run(uri, new JsonObject { ["ip"] = "10.0.0.2" })).Output["allowed"]!.GetValue<bool>().ShouldBeFalse();
        var stored = (await harness.Documents.GetAsync(Collections.Policies, uri, Ct))!;
        var body = (JsonObject)stored.Body.DeepClone();
        body["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.2") };
        await harness.Documents.ReplaceAsync(Collections.Policies, uri, body, stored.Revision, Ct);
        (await Run(uri, new JsonObject { ["ip"] = "10.0.0.2" })).Output["allowed"]!.GetValue<bool>().ShouldBeTrue();
        await harness.Documents.DeleteAsync(Collections.Policies, uri, null, Ct);
        (await Should.ThrowAsync<PolicyGridException>(() => Run(uri, new JsonObject { ["ip"] = "10.0.0.2" }))).Status.ShouldBe(404);
    }

    [Fact]
    public async Task Every_execution_is_in_the_decision_log()
    {
        var uri = await harness.AddSampleAsync("ip_allowlist");
        await Run(uri, new JsonObject { ["ip"] = "10.0.0.1" });
        await Should.ThrowAsync<PolicyGridException>(() => Run(uri, new JsonObject { ["ip"] = 7 }));
        await Should.ThrowAsync<PolicyGridException>(() => harness.Executor.ExecuteAsync(new ExecutionRequest("ghost:1-a", []), CallerIdentity.Anonymous, Ct));

        var log = await harness.DecisionsAsync();
        log.Count.ShouldBe(3);
        var ok = log.Single(d => d["outcome"]!.GetValue<string>() == "result");
        ok["policy_rule_uri"]!.GetValue<string>().ShouldBe(uri);
        ok["caller"]!.GetValue<string>().ShouldBe("alice-token");
        ok["bundle_sha256"]!.GetValue<string>().Length.ShouldBe(64);
        ok["input_sha256"]!.GetValue<string>().Length.ShouldBe(64);
        ok["status"]!.GetValue<int>().ShouldBe(200);
        ok["duration_ms"]!.GetValue<double>().ShouldBeGreaterThan(0);
        ok["at"]!.GetValue<string>().ShouldEndWith("Z");
        var invalid = log.Single(d => d["error_code"]!.GetValue<string>() == "validation_failed");
        invalid["status"]!.GetValue<int>().ShouldBe(400);
        var unknown = log.Single(d => d["error_code"]!.GetValue<string>() == "not_found");
        unknown["caller"]!.GetValue<string>().ShouldBe("anonymous");
        unknown["policy_rule_uri"]!.GetValue<string>().ShouldBe("ghost:1-a");

        // Same input, same hash, whatever the key order.
        await Run(uri, new JsonObject { ["ip"] = "10.0.0.1" });
        var hashes = (await harness.DecisionsAsync()).Where(d => d["outcome"]!.GetValue<string>() == "result").Select(d => d["input_sha256"]!.GetValue<string>()).Distinct();
        hashes.Count().ShouldBe(1);
    }

    [Fact]
    public async Task Decision_log_retention_keeps_the_newest_within_count_and_age()
    {
        await using var small = new ExecutorHarness(o => o.Decisions.MaxCount = 3);
        var uri = await small.AddSampleAsync("ip_allowlist");
        for (var i = 0; i < 5; i++)
            await small.Executor.ExecuteAsync(new ExecutionRequest(uri, new JsonObject { ["ip"] = $"10.0.0.{i}" }), Alice, Ct);
        (await small.DecisionsAsync()).Count.ShouldBe(5);
        (await small.Decisions.PruneAsync(Ct)).ShouldBe(2);
        var kept = await small.DecisionsAsync();
        kept.Count.ShouldBe(3);

        await using var aged = new ExecutorHarness(o => o.Decisions.MaxAge = TimeSpan.Zero);
        var agedUri = await aged.AddSampleAsync("ip_allowlist");
        await aged.Executor.ExecuteAsync(new ExecutionRequest(agedUri, new JsonObject { ["ip"] = "10.0.0.1" }), Alice, Ct);
        await aged.Decisions.FlushAsync(Ct);
        (await aged.Decisions.PruneAsync(Ct)).ShouldBe(1);
        (await aged.DecisionsAsync()).ShouldBeEmpty();
    }

    [Fact]
    public async Task Management_runs_on_a_fresh_instance_and_checks_the_command()
    {
        var uri = await harness.AddSampleAsync("ip_allowlist");
        var state = await harness.Executor.ManageAsync(new ManagementRequest(uri, "get_state", []), Alice, Ct);
        state.Output["local_allowlist"]!.AsArray().Select(n => n!.GetValue<string>()).ShouldBe(["10.0.0.1"]);

        var updated = await harness.Executor.ManageAsync(new ManagementRequest(uri, "update_local_allowlist",
            new JsonObject { ["ips"] = new JsonArray("10.0.0.2") }), Alice, Ct);
        updated.Output["local_allowlist"]!.AsArray().Count.ShouldBe(1);
        // Type 2 is stateless: the update lived only on that fresh instance.
        (await Run(uri, new JsonObject { ["ip"] = "10.0.0.2" })).Output["allowed"]!.GetValue<bool>().ShouldBeFalse();

        var unknown = await Should.ThrowAsync<PolicyGridException>(() =>
            harness.Executor.ManageAsync(new ManagementRequest(uri, "reboot", []), Alice, Ct));
        unknown.Status.ShouldBe(400);
        unknown.Message.ShouldContain("reboot");

        var badData = await Should.ThrowAsync<PolicyGridException>(() =>
            harness.Executor.ManageAsync(new ManagementRequest(uri, "update_local_allowlist", new JsonObject { ["ips"] = "10.0.0.2" }), Alice, Ct));
        badData.Message.ShouldContain("data.ips");
    }

    [Fact]
    public async Task A_raising_policy_answers_422_through_the_executor_and_is_logged_as_such()
    {
        var uri = await harness.AddSourceAsync("raiser", """
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    raise PermissionError("tenant is suspended")
            """);
        var error = await Should.ThrowAsync<PolicyGridException>(() => Run(uri, []));
        error.Status.ShouldBe(422);
        error.Message.ShouldBe("PermissionError: tenant is suspended");
        (await harness.DecisionsAsync()).Single()["error_code"]!.GetValue<string>().ShouldBe("policy_error");
    }

    [Fact]
    public async Task Calls_that_arrive_together_run_at_the_same_time_on_different_workers()
    {
        // Each call waits until the other has started: both can only finish if they overlap. They meet in a directory
        // under /tmp, so the two workers must share the host's /tmp.
        await using var sharing = new ExecutorHarness(o => o.Pool.PrivateTemp = false);
        var meet = Directory.CreateTempSubdirectory("pg-meet-").FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(meet, (UnixFileMode)0b111_111_111);
        try
        {
            var uri = await sharing.AddSourceAsync("pids", """
                import os, time

                class AIOSv1PolicyRule:
                    def __init__(self, rule_id, settings, parameters):
                        pass
                    def eval(self, parameters, input_data, context):
                        open(os.path.join(input_data["dir"], input_data["me"]), "w").close()
                        deadline = time.time() + 10
                        while not os.path.exists(os.path.join(input_data["dir"], input_data["other"])):
                            if time.time() > deadline:
                                raise TimeoutError("the other call never started")
                            time.sleep(0.002)
                        return {"pid": os.getpid()}
                """);
            JsonObject Input(string me, string other) => new() { ["dir"] = meet, ["me"] = me, ["other"] = other };
            var both = await Task.WhenAll(
                sharing.Executor.ExecuteAsync(new ExecutionRequest(uri, Input("a", "b")), CallerIdentity.Anonymous, Ct),
                sharing.Executor.ExecuteAsync(new ExecutionRequest(uri, Input("b", "a")), CallerIdentity.Anonymous, Ct));
            both.Select(r => r.Output["pid"]!.GetValue<int>()).Distinct().Count().ShouldBe(2);
        }
        finally
        {
            Directory.Delete(meet, recursive: true);
        }
    }
}
