using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;

namespace PolicyGrid.Sdk.Tests;

/// <summary>
/// What management commands did to a WorkerProcess evaluator's instance, when the pool replaces its worker (it crashed,
/// overran, was killed or recycled): rebuilt before the next call, as a Type 4 function's instance is, with set_state of its
/// saved get_state() or by replaying the commands. The next call used to get a fresh instance, silently.
/// </summary>
public sealed class WorkerReplacementTests : IAsyncDisposable
{
    // A class without get_state: only a replay of its management commands rebuilds it. "pin" succeeds in the worker process
    // it names only, so it fails when replayed in a replacement.
    private const string Journalled = """
        import os
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.allow = list(parameters.get("local_allowlist", []))
            def eval(self, parameters, input_data, context):
                context["calls"] = context.get("calls", 0) + 1
                return {"allowed": input_data["ip"] in self.allow, "calls": context["calls"], "pid": os.getpid()}
            def management(self, action, data):
                if action == "add_ip":
                    self.allow.append(data["ip"])
                elif action == "pin" and data["pid"] != os.getpid():
                    raise ValueError(f"pinned to process {data['pid']}")
                elif action == "add_then_fail":
                    self.allow.append(data["ip"])
                    raise ValueError("no room for " + data["ip"])
                return {"allow": self.allow}
        """;

    private static readonly JsonArray Commands = new(
        new JsonObject { ["name"] = "add_ip", ["schema"] = new JsonObject() },
        new JsonObject { ["name"] = "pin", ["schema"] = new JsonObject() },
        new JsonObject { ["name"] = "add_then_fail", ["schema"] = new JsonObject() },
        new JsonObject { ["name"] = "status", ["schema"] = new JsonObject(), ["read_only"] = true });

    private readonly List<IDisposable> _registries = [];
    private readonly List<LocalPolicyEvaluator> _made = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var ev in _made) await ev.DisposeAsync();
        foreach (var registry in _registries) registry.Dispose();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static JsonObject Ip(string ip) => new() { ["ip"] = ip };

    private LoopbackRegistry Registry(JsonObject document, byte[] bundle)
    {
        var registry = new LoopbackRegistry(document, bundle);
        _registries.Add(registry);
        return registry;
    }

    /// <summary>samples/policies/ip_allowlist as registered: a class with get_state/set_state.</summary>
    private LoopbackRegistry SampleRegistry()
    {
        var document = Sample.Manifest("", "beta");
        document["policy_rule_uri"] = EvaluatorTests.Uri;
        document["status"] = "active";
        return Registry(document, Sample.Bundle());
    }

    private LoopbackRegistry JournalledRegistry()
    {
        var document = EvaluatorTests.Document();
        document.Remove("policy_input_schema");
        document["management_commands_schema"] = Commands.DeepClone();
        return Registry(document, TestBundles.Zip(("code/function.py", Journalled)));
    }

    private async Task<LocalPolicyEvaluator> Evaluator(LoopbackRegistry registry, LocalIsolation isolation = LocalIsolation.WorkerProcess,
        int maxJournalEntries = 1000)
    {
        var ev = await OneWorkerEvaluator(registry, isolation, maxJournalEntries);
        _made.Add(ev);
        return ev;
    }

    /// <summary>An evaluator of <see cref="EvaluatorTests.Uri"/> from <paramref name="registry"/>; in WorkerProcess mode on a pool of one worker.</summary>
    internal static Task<LocalPolicyEvaluator> OneWorkerEvaluator(LoopbackRegistry registry, LocalIsolation isolation, int maxJournalEntries,
        ILoggerFactory? loggers = null) =>
        LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(registry.Url), new LocalPolicyEvaluatorOptions
        {
            PolicyRuleUri = EvaluatorTests.Uri, Isolation = isolation, RevalidateInterval = TimeSpan.FromHours(1),
            MaxJournalEntries = maxJournalEntries, LoggerFactory = loggers,
            WorkerPool = new WorkerPoolOptions { Workers = 1, IsolatePolicies = false, WorkDirectory = Path.Combine(Path.GetTempPath(), "pg-sdk-workers") },
        }, Ct);

    /// <summary>Kills the evaluator's worker (SIGKILL, as the kernel's OOM killer or an operator would) and waits for it to go.</summary>
    private static async Task KillWorkerAsync(LocalPolicyEvaluator ev)
    {
        var workers = ev.LiveWorkers();
        workers.Count.ShouldBe(1);
        using var worker = Process.GetProcessById(workers[0].Pid);
        worker.Kill();
        await worker.WaitForExitAsync(Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }

    private static async Task<bool> AllowedAsync(LocalPolicyEvaluator ev, string ip) =>
        (await ev.ExecutePolicyRuleAsync(Ip(ip), ct: Ct))["allowed"]!.GetValue<bool>();

    [Fact]
    public async Task The_sample_allowlist_keeps_an_update_of_its_management_after_its_worker_is_killed()
    {
        var ev = await Evaluator(SampleRegistry());
        await ev.ExecuteManagementCommandAsync("update_local_allowlist", new JsonObject { ["ips"] = new JsonArray("10.7.7.7") }, Ct);
        (await AllowedAsync(ev, "10.7.7.7")).ShouldBeTrue();

        await KillWorkerAsync(ev);

        // Restored with set_state from the get_state() its last call left, as a Type 4 function is: it answered denied.
        (await AllowedAsync(ev, "10.7.7.7")).ShouldBeTrue();
        (await AllowedAsync(ev, "10.0.0.1")).ShouldBeFalse(); // the update replaced the stored list, and still does
        (await ev.ExecuteManagementCommandAsync("get_state", ct: Ct))!["local_allowlist"]!.AsArray().Select(n => n!.GetValue<string>()).ShouldBe(["10.7.7.7"]);
    }

    [Fact]
    public async Task Get_state_runs_after_management_commands_only_so_calls_cost_what_they_did()
    {
        const string counting = """
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    self.allow, self.states = list(parameters.get("local_allowlist", [])), 0
                def eval(self, parameters, input_data, context):
                    return {"allowed": input_data["ip"] in self.allow, "states": self.states}
                def management(self, action, data):
                    self.allow.append(data["ip"])
                def get_state(self):
                    self.states += 1
                    return {"allow": self.allow}
                def set_state(self, state):
                    self.allow = list(state["allow"])
            """;
        var document = EvaluatorTests.Document();
        document.Remove("policy_input_schema");
        var ev = await Evaluator(Registry(document, TestBundles.Zip(("code/function.py", counting))));
        for (var i = 0; i < 3; i++)
            (await ev.ExecutePolicyRuleAsync(Ip("10.0.0.1"), ct: Ct))["states"]!.GetValue<int>().ShouldBe(0);
        await ev.ExecuteManagementCommandAsync("add_ip", new JsonObject { ["ip"] = "10.1.1.1" }, Ct);
        (await ev.ExecutePolicyRuleAsync(Ip("10.1.1.1"), ct: Ct))["states"]!.GetValue<int>().ShouldBe(1);

        await KillWorkerAsync(ev);

        var after = await ev.ExecutePolicyRuleAsync(Ip("10.1.1.1"), ct: Ct);
        after["allowed"]!.GetValue<bool>().ShouldBeTrue(); // set_state of the state the command left
        after["states"]!.GetValue<int>().ShouldBe(0);
    }

    [Fact]
    public async Task A_class_without_get_state_replays_its_management_commands_in_order_on_a_replaced_worker()
    {
        var ev = await Evaluator(JournalledRegistry());
        await ev.ExecuteManagementCommandAsync("add_ip", new JsonObject { ["ip"] = "10.1.1.1" }, Ct);
        await ev.ExecuteManagementCommandAsync("add_ip", new JsonObject { ["ip"] = "10.2.2.2" }, Ct);
        var before = await ev.ExecutePolicyRuleAsync(Ip("10.2.2.2"), ct: Ct);

        await KillWorkerAsync(ev);

        var after = await ev.ExecutePolicyRuleAsync(Ip("10.1.1.1"), ct: Ct);
        after["pid"]!.GetValue<int>().ShouldNotBe(before["pid"]!.GetValue<int>());
        after["allowed"]!.GetValue<bool>().ShouldBeTrue();
        after["calls"]!.GetValue<int>().ShouldBe(2); // the context goes on, and the call ran once
        (await AllowedAsync(ev, "10.2.2.2")).ShouldBeTrue();
        // Replayed once, in order: the list holds each command's IP once, after the stored one.
        (await ev.ExecuteManagementCommandAsync("status", ct: Ct))!["allow"]!.AsArray().Select(n => n!.GetValue<string>())
            .ShouldBe(["10.0.0.1", "10.1.1.1", "10.2.2.2"]);
    }

    [Fact]
    public async Task A_command_that_fails_on_replay_fails_the_call_naming_it_and_is_tried_again_before_the_next()
    {
        var ev = await Evaluator(JournalledRegistry());
        await ev.ExecuteManagementCommandAsync("add_ip", new JsonObject { ["ip"] = "10.1.1.1" }, Ct);
        var pid = (await ev.ExecutePolicyRuleAsync(Ip("10.1.1.1"), ct: Ct))["pid"]!.GetValue<int>();
        await ev.ExecuteManagementCommandAsync("pin", new JsonObject { ["pid"] = pid }, Ct);

        await KillWorkerAsync(ev);

        for (var call = 0; call < 2; call++)
        {
            var e = await Should.ThrowAsync<PolicyGridApiException>(() => ev.ExecutePolicyRuleAsync(Ip("10.1.1.1"), ct: Ct));
            (e.Status, e.Code).ShouldBe((422, "policy_error"));
            e.Reason.ShouldContain($"policy {EvaluatorTests.Uri} (LocalPolicyEvaluator, WorkerProcess) could not apply management 'pin' (journal entry 2 of 2)");
            e.Reason.ShouldContain($"ValueError: pinned to process {pid}");
        }
    }

    [Fact]
    public async Task Past_MaxJournalEntries_a_command_of_a_class_without_get_state_is_refused_409_and_runs_nothing()
    {
        var ev = await Evaluator(JournalledRegistry(), maxJournalEntries: 2);
        await ev.ExecuteManagementCommandAsync("add_ip", new JsonObject { ["ip"] = "10.1.1.1" }, Ct);
        await ev.ExecuteManagementCommandAsync("add_ip", new JsonObject { ["ip"] = "10.2.2.2" }, Ct);

        var e = await Should.ThrowAsync<PolicyGridApiException>(() => ev.ExecuteManagementCommandAsync("add_ip", new JsonObject { ["ip"] = "10.3.3.3" }, Ct));

        (e.Status, e.Code).ShouldBe((409, "conflict"));
        e.Reason.ShouldContain("2 management commands are kept to replay");
        e.Reason.ShouldContain("MaxJournalEntries");
        (await AllowedAsync(ev, "10.3.3.3")).ShouldBeFalse();
        // A command the policy declares read_only is never kept, so it passes the limit.
        (await ev.ExecuteManagementCommandAsync("status", ct: Ct))!["allow"]!.AsArray().Count.ShouldBe(3);
    }

    [Fact]
    public async Task A_class_with_get_state_keeps_no_journal_so_the_limit_does_not_bind_it()
    {
        var ev = await Evaluator(SampleRegistry(), maxJournalEntries: 1);
        for (var i = 1; i <= 3; i++)
            await ev.ExecuteManagementCommandAsync("update_local_allowlist", new JsonObject { ["ips"] = new JsonArray($"10.7.7.{i}") }, Ct);
        (await AllowedAsync(ev, "10.7.7.3")).ShouldBeTrue();
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public async Task A_MaxJournalEntries_below_one_is_refused_at_creation_naming_it(int entries)
    {
        var registry = JournalledRegistry();
        var e = await Should.ThrowAsync<ArgumentException>(() => Evaluator(registry, maxJournalEntries: entries));
        e.Message.ShouldContain($"MaxJournalEntries must be 1 or more");
        e.Message.ShouldContain($"not {entries}");
        registry.PolicyReads.ShouldBe(0);
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task An_update_that_reloads_the_policy_starts_from_the_new_revision_as_a_redeployed_function_and_metadata_alone_keeps_it(
        LocalIsolation isolation)
    {
        var registry = JournalledRegistry();
        var ev = await Evaluator(registry, isolation);
        await ev.ExecuteManagementCommandAsync("add_ip", new JsonObject { ["ip"] = "10.1.1.1" }, Ct);

        registry.Update(d => d["description"] = "metadata only");
        await ev.RefreshAsync(Ct);
        (await AllowedAsync(ev, "10.1.1.1")).ShouldBeTrue();

        // Type 4 takes a new revision only by a redeployment, which starts afresh: the new instance has none of the old one's
        // management commands (they were made for the old code and parameters). The context carries over, as on the servers.
        registry.Update(d => d["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.9") });
        await ev.RefreshAsync(Ct);
        (await AllowedAsync(ev, "10.1.1.1")).ShouldBeFalse();
        var after = await ev.ExecutePolicyRuleAsync(Ip("10.0.0.9"), ct: Ct);
        after["allowed"]!.GetValue<bool>().ShouldBeTrue();
        after["calls"]!.GetValue<int>().ShouldBe(3);
        if (isolation == LocalIsolation.WorkerProcess)
        {
            // Nor does a replaced worker bring them back: the new revision's journal is empty.
            await KillWorkerAsync(ev);
            (await AllowedAsync(ev, "10.1.1.1")).ShouldBeFalse();
        }
    }

    [Fact]
    public async Task A_management_command_that_raises_part_way_leaves_nothing_of_itself_behind()
    {
        // As on Type 4: the instance that may hold half of the failed command is dropped, and the next call rebuilds it from
        // the commands that succeeded. It used to be kept, allowing an address whose command had failed.
        var ev = await Evaluator(JournalledRegistry());
        await ev.ExecuteManagementCommandAsync("add_ip", new JsonObject { ["ip"] = "10.1.1.1" }, Ct);

        var e = await Should.ThrowAsync<PolicyGridApiException>(() => ev.ExecuteManagementCommandAsync("add_then_fail", new JsonObject { ["ip"] = "10.2.2.2" }, Ct));

        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        ev.ExecutePolicyRule(Ip("10.2.2.2"))["allowed"]!.GetValue<bool>().ShouldBeFalse();
        ev.ExecutePolicyRule(Ip("10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }
}
