using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;
using PolicyGrid.TestSupport;

namespace PolicyGrid.Sdk.Tests;

/// <summary>
/// A management command that raises part way leaves nothing of itself behind, in both local isolations (and the Python SDK's
/// local mode): the instance is rebuilt from the commands that succeeded, or from the state the last one left, as Type 4
/// rebuilds it. InProcess mode used to keep the instance, so an address appended before the check that raised was allowed.
/// </summary>
public sealed class ManagementRollbackTests : IAsyncDisposable
{
    // {state} is get_state/set_state, or nothing. Each instance has a serial number: "pin" succeeds only on the instance whose
    // number it is given, so replaying it on a rebuilt instance fails.
    private const string Policy = """
        import itertools

        _serials = itertools.count(1)


        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.serial = next(_serials)
                self.allow = list(parameters.get("local_allowlist", []))

            def eval(self, parameters, input_data, context):
                if input_data["ip"] == "boom":
                    self.allow.append("10.6.6.6")
                    raise ValueError("boom is no address")
                return {"allowed": input_data["ip"] in self.allow, "serial": self.serial}

            def management(self, action, data):
                if action in ("add_ip", "add_then_fail", "add_then_list"):
                    self.allow.append(data["ip"])
                if action == "add_then_fail":
                    raise ValueError("no room for " + data["ip"])
                if action == "add_then_list":
                    return list(self.allow)
                if action in ("pin", "pin_read_only") and data["serial"] != self.serial:
                    raise ValueError(f"pinned to instance {data['serial']}, not {self.serial}")
                return {"allow": self.allow, "serial": self.serial}
        {state}
        """;

    private const string State = """

            def get_state(self):
                if "10.9.9.9" in self.allow:
                    raise ValueError("10.9.9.9 cannot be saved")
                if "10.8.8.8" in self.allow:
                    return list(self.allow)
                return {"allow": self.allow}

            def set_state(self, state):
                if "10.5.5.5" in state["allow"]:
                    raise ValueError("10.5.5.5 cannot be restored")
                self.allow = list(state["allow"])
        """;

    private static readonly JsonArray Commands = new(
        new JsonObject { ["name"] = "add_ip", ["schema"] = new JsonObject() },
        new JsonObject { ["name"] = "add_then_fail", ["schema"] = new JsonObject() },
        new JsonObject { ["name"] = "add_then_list", ["schema"] = new JsonObject() },
        new JsonObject { ["name"] = "pin", ["schema"] = new JsonObject() },
        new JsonObject { ["name"] = "pin_read_only", ["schema"] = new JsonObject(), ["read_only"] = true },
        new JsonObject { ["name"] = "status", ["schema"] = new JsonObject(), ["read_only"] = true });

    private readonly List<IDisposable> _registries = [];
    private readonly List<LocalPolicyEvaluator> _made = [];
    private LoopbackRegistry? _registry;

    public async ValueTask DisposeAsync()
    {
        foreach (var ev in _made) await ev.DisposeAsync();
        foreach (var registry in _registries) registry.Dispose();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static JsonObject Ip(string ip) => new() { ["ip"] = ip };

    private async Task<LocalPolicyEvaluator> Evaluator(LocalIsolation isolation, bool keepsState, int maxJournalEntries = 1000,
        LogCapture? logs = null)
    {
        var document = EvaluatorTests.Document();
        document.Remove("policy_input_schema");
        document["management_commands_schema"] = Commands.DeepClone();
        var code = Policy.Replace("{state}", keepsState ? State : "", StringComparison.Ordinal);
        _registry = new LoopbackRegistry(document, TestBundles.Zip(("code/function.py", code)));
        _registries.Add(_registry);
        var ev = await WorkerReplacementTests.OneWorkerEvaluator(_registry, isolation, maxJournalEntries, logs is null ? null : new LoggerFactory([logs]));
        _made.Add(ev);
        return ev;
    }

    private static async Task<bool> AllowedAsync(LocalPolicyEvaluator ev, string ip) =>
        (await ev.ExecutePolicyRuleAsync(Ip(ip), ct: Ct))["allowed"]!.GetValue<bool>();

    private static async Task<JsonObject> Management(LocalPolicyEvaluator ev, string action, JsonObject? data = null) =>
        (JsonObject)(await ev.ExecuteManagementCommandAsync(action, data, Ct))!;

    private static Task<PolicyGridApiException> Refused(LocalPolicyEvaluator ev, string action, JsonObject? data = null) =>
        Should.ThrowAsync<PolicyGridApiException>(() => ev.ExecuteManagementCommandAsync(action, data, Ct));

    [Theory]
    [InlineData(LocalIsolation.InProcess, false)]
    [InlineData(LocalIsolation.InProcess, true)]
    [InlineData(LocalIsolation.WorkerProcess, false)]
    [InlineData(LocalIsolation.WorkerProcess, true)]
    public async Task A_command_that_raises_part_way_leaves_nothing_of_itself_behind(LocalIsolation isolation, bool keepsState)
    {
        var ev = await Evaluator(isolation, keepsState);
        await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.1.1.1" });

        var e = await Refused(ev, "add_then_fail", new JsonObject { ["ip"] = "10.2.2.2" });

        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        e.Reason.ShouldContain("ValueError: no room for 10.2.2.2"); // the command's own error
        (await AllowedAsync(ev, "10.2.2.2")).ShouldBeFalse();
        (await AllowedAsync(ev, "10.1.1.1")).ShouldBeTrue();
        (await AllowedAsync(ev, "10.0.0.1")).ShouldBeTrue(); // __init__ ran with the same parameters
        // The next command runs on the rebuilt instance and is kept as well.
        (await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.3.3.3" }))["allow"]!.AsArray().Select(n => n!.GetValue<string>())
            .ShouldBe(["10.0.0.1", "10.1.1.1", "10.3.3.3"]);
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess, false)]
    [InlineData(LocalIsolation.InProcess, true)]
    [InlineData(LocalIsolation.WorkerProcess, false)]
    [InlineData(LocalIsolation.WorkerProcess, true)]
    public async Task A_command_answering_no_dict_fails_and_leaves_nothing_of_itself_behind(LocalIsolation isolation, bool keepsState)
    {
        // WorkerProcess mode used to keep the instance (and, for a class with get_state, the state taken after the command),
        // so the address was allowed, and came back when the instance was rebuilt.
        var ev = await Evaluator(isolation, keepsState);
        await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.1.1.1" });

        var e = await Refused(ev, "add_then_list", new JsonObject { ["ip"] = "10.2.2.2" });

        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        e.Reason.ShouldBe($"management of {EvaluatorTests.Uri} returned a list, not a dict");
        (await AllowedAsync(ev, "10.2.2.2")).ShouldBeFalse();
        (await AllowedAsync(ev, "10.1.1.1")).ShouldBeTrue();
        await Refused(ev, "add_then_fail", new JsonObject { ["ip"] = "10.3.3.3" }); // rebuilt again, from what succeeded
        (await AllowedAsync(ev, "10.2.2.2")).ShouldBeFalse();
        (await AllowedAsync(ev, "10.1.1.1")).ShouldBeTrue();
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task A_class_with_get_state_is_rebuilt_from_its_state_not_by_replaying_commands(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation, keepsState: true);
        var serial = (await Management(ev, "status"))["serial"]!.GetValue<int>();
        await Management(ev, "pin", new JsonObject { ["serial"] = serial }); // would fail if replayed on a new instance
        await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.1.1.1" });

        await Refused(ev, "add_then_fail", new JsonObject { ["ip"] = "10.2.2.2" });

        var answer = await ev.ExecutePolicyRuleAsync(Ip("10.1.1.1"), ct: Ct);
        answer["allowed"]!.GetValue<bool>().ShouldBeTrue();
        answer["serial"]!.GetValue<int>().ShouldNotBe(serial);
    }

    // A get_state() answering a list: WorkerProcess mode kept it as {"value": [...]}, InProcess as it was, and the command
    // succeeded; set_state() got back either shape.
    [Theory]
    [InlineData(LocalIsolation.InProcess, "10.9.9.9", "get_state() after management raised ValueError: 10.9.9.9 cannot be saved")]
    [InlineData(LocalIsolation.WorkerProcess, "10.9.9.9", "get_state() after management raised ValueError: 10.9.9.9 cannot be saved")]
    [InlineData(LocalIsolation.InProcess, "10.8.8.8", "get_state() after management answered a list, not a dict")]
    [InlineData(LocalIsolation.WorkerProcess, "10.8.8.8", "get_state() after management answered a list, not a dict")]
    public async Task A_get_state_that_raises_or_answers_no_dict_fails_the_command_and_leaves_nothing_of_it(LocalIsolation isolation, string ip, string reason)
    {
        var ev = await Evaluator(isolation, keepsState: true);
        await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.1.1.1" });

        var e = await Refused(ev, "add_ip", new JsonObject { ["ip"] = ip });

        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        e.Reason.ShouldContain(reason);
        (await AllowedAsync(ev, ip)).ShouldBeFalse();
        (await AllowedAsync(ev, "10.1.1.1")).ShouldBeTrue();
        (await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.3.3.3" }))["allow"]!.ToJsonString().ShouldBe("""["10.0.0.1","10.1.1.1","10.3.3.3"]""");
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task A_command_that_fails_on_replay_fails_every_call_naming_it_until_a_new_revision(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation, keepsState: false);
        var serial = (await Management(ev, "status"))["serial"]!.GetValue<int>();
        await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.1.1.1" });
        await Management(ev, "pin", new JsonObject { ["serial"] = serial });

        (await Refused(ev, "add_then_fail", new JsonObject { ["ip"] = "10.2.2.2" })).Reason.ShouldContain("no room for 10.2.2.2");

        foreach (var call in (Func<Task>[])[() => AllowedAsync(ev, "10.1.1.1"), () => Management(ev, "status")])
        {
            var e = await Should.ThrowAsync<PolicyGridApiException>(call);
            (e.Status, e.Code).ShouldBe((422, "policy_error"));
            e.Reason.ShouldStartWith($"policy {EvaluatorTests.Uri} (LocalPolicyEvaluator, {isolation}) could not apply management 'pin' " +
                $"(journal entry 2 of 2) again after its instance was recreated: ValueError: pinned to instance {serial}, not ");
            e.Reason.ShouldEndWith("; it tries again before its next call");
        }
        // A new revision starts afresh, without the commands.
        _registry!.Update(d => d["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.9") });
        await ev.RefreshAsync(Ct);
        (await AllowedAsync(ev, "10.0.0.9")).ShouldBeTrue();
        (await AllowedAsync(ev, "10.1.1.1")).ShouldBeFalse();
    }

    // The evaluator's own warnings (the pool logs a policy's errors too, under its own category).
    private static List<string> EvaluatorWarnings(LogCapture logs) =>
        [.. logs.Entries.Where(e => e.Category == typeof(LocalPolicyEvaluator).FullName && e.Level == LogLevel.Warning).Select(e => e.Message)];

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task A_set_state_that_raises_on_a_rebuild_fails_every_call_naming_it_and_is_logged(LocalIsolation isolation)
    {
        // WorkerProcess answered the bare "ValueError: …", as if the call itself had raised; InProcess logged nothing.
        var logs = new LogCapture();
        var ev = await Evaluator(isolation, keepsState: true, logs: logs);
        await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.5.5.5" });
        await Refused(ev, "add_then_fail", new JsonObject { ["ip"] = "10.2.2.2" });
        var owner = $"policy {EvaluatorTests.Uri} (LocalPolicyEvaluator, {isolation})";

        foreach (var call in (Func<Task>[])[() => AllowedAsync(ev, "10.5.5.5"), () => Management(ev, "status")])
        {
            var e = await Should.ThrowAsync<PolicyGridApiException>(call);
            (e.Status, e.Code, e.Reason).ShouldBe((422, "policy_error", $"{owner} could not restore its state with set_state() after its instance " +
                "was recreated: ValueError: 10.5.5.5 cannot be restored; it tries again before its next call"));
        }
        EvaluatorWarnings(logs).ShouldBe(Enumerable.Repeat(
            $"{owner} could not restore its state with set_state() after its instance was recreated: ValueError: 10.5.5.5 cannot be restored", 2),
            logs.ToString());
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task A_command_that_fails_on_replay_is_logged_naming_it(LocalIsolation isolation)
    {
        // WorkerProcess logged it; InProcess did not.
        var logs = new LogCapture();
        var ev = await Evaluator(isolation, keepsState: false, logs: logs);
        var serial = (await Management(ev, "status"))["serial"]!.GetValue<int>();
        await Management(ev, "pin", new JsonObject { ["serial"] = serial });
        await Refused(ev, "add_then_fail", new JsonObject { ["ip"] = "10.2.2.2" });

        await Should.ThrowAsync<PolicyGridApiException>(() => AllowedAsync(ev, "10.0.0.1"));

        var warning = EvaluatorWarnings(logs).ShouldHaveSingleItem(logs.ToString());
        warning.ShouldStartWith($"policy {EvaluatorTests.Uri} (LocalPolicyEvaluator, {isolation}) could not replay management 'pin' (journal entry 1 of 1): " +
            $"ValueError: pinned to instance {serial}, not ");
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task MaxJournalEntries_refuses_a_command_before_a_rebuild_that_would_fail(LocalIsolation isolation)
    {
        // As WorkerProcess mode and a Type 4 function answer it: the 409 runs nothing, a rebuild included. InProcess rebuilt
        // first, and answered the rebuild's 422 instead.
        var ev = await Evaluator(isolation, keepsState: false, maxJournalEntries: 1);
        var serial = (await Management(ev, "status"))["serial"]!.GetValue<int>();
        await Management(ev, "pin", new JsonObject { ["serial"] = serial }); // the journal is full; replayed, it fails
        await Refused(ev, "pin_read_only", new JsonObject { ["serial"] = -1 }); // read-only commands pass the bound: this one fails

        var e = await Refused(ev, "add_ip", new JsonObject { ["ip"] = "10.3.3.3" });

        (e.Status, e.Code).ShouldBe((409, "conflict"));
        var next = await Should.ThrowAsync<PolicyGridApiException>(() => AllowedAsync(ev, "10.0.0.1"));
        next.Status.ShouldBe(422);
        next.Reason.ShouldContain("could not apply management 'pin' (journal entry 1 of 1) again");
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task Read_only_commands_are_not_kept_and_pass_MaxJournalEntries(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation, keepsState: false, maxJournalEntries: 2);
        var serial = (await Management(ev, "status"))["serial"]!.GetValue<int>();
        await Management(ev, "pin_read_only", new JsonObject { ["serial"] = serial }); // replayed, it would fail on the rebuilt instance
        await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.1.1.1" });
        await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.2.2.2" });
        for (var i = 0; i < 3; i++) await Management(ev, "status");

        var e = await Refused(ev, "add_ip", new JsonObject { ["ip"] = "10.3.3.3" });

        (e.Status, e.Code).ShouldBe((409, "conflict"));
        e.Reason.ShouldContain($"policy {EvaluatorTests.Uri}: 2 management commands are kept to replay on a recreated instance (the limit, " +
            "LocalPolicyEvaluatorOptions.MaxJournalEntries) because the policy class has no get_state");
        (await AllowedAsync(ev, "10.3.3.3")).ShouldBeFalse(); // it ran nothing
        (await Refused(ev, "add_then_fail", new JsonObject { ["ip"] = "10.4.4.4" })).Status.ShouldBe(409);
        (await AllowedAsync(ev, "10.4.4.4")).ShouldBeFalse();
        (await Management(ev, "status"))["allow"]!.AsArray().Select(n => n!.GetValue<string>()).ShouldBe(["10.0.0.1", "10.1.1.1", "10.2.2.2"]);
    }

    [Fact]
    public async Task In_process_a_class_with_get_state_keeps_no_journal_so_the_limit_does_not_bind_it()
    {
        var ev = await Evaluator(LocalIsolation.InProcess, keepsState: true, maxJournalEntries: 1);
        for (var i = 1; i < 5; i++) await Management(ev, "add_ip", new JsonObject { ["ip"] = $"10.1.1.{i}" });
        (await AllowedAsync(ev, "10.1.1.4")).ShouldBeTrue();
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task An_eval_that_raises_keeps_the_instance(LocalIsolation isolation)
    {
        // What eval sets on self is not rebuilt anyway, and a rebuild per bad input would cost every such call.
        var ev = await Evaluator(isolation, keepsState: false);
        await Management(ev, "add_ip", new JsonObject { ["ip"] = "10.1.1.1" });
        var serial = (await ev.ExecutePolicyRuleAsync(Ip("10.1.1.1"), ct: Ct))["serial"]!.GetValue<int>();

        var e = await Should.ThrowAsync<PolicyGridApiException>(() => ev.ExecutePolicyRuleAsync(Ip("boom"), ct: Ct));

        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        var answer = await ev.ExecutePolicyRuleAsync(Ip("10.6.6.6"), ct: Ct);
        answer["allowed"]!.GetValue<bool>().ShouldBeTrue();
        answer["serial"]!.GetValue<int>().ShouldBe(serial);
    }
}
