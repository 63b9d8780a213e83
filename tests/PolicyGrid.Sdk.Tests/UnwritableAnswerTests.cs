using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;

namespace PolicyGrid.Sdk.Tests;

/// <summary>
/// Answers a Python policy can give that have no JSON form. The server answers each with a 422 policy_error naming
/// the problem and serves on; a local evaluator, in either isolation, must do the same rather than hand back what
/// the server would never answer (or fail later, wherever the caller writes it).
/// </summary>
public sealed class UnwritableAnswerTests : IAsyncDisposable
{
    private const string Policy = """
        import sys

        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("no text for you")

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                mode = input_data.get("mode")
                if mode == "colliding_result":
                    return {"n": {True: 1, "true": 2}}
                if mode == "colliding_context":
                    context[1] = "a"
                    context["1"] = "b"
                    return {"ok": True}
                if mode == "surrogate_value":
                    return {"s": "\ud800"}
                if mode == "surrogate_key":
                    return {"\udc00": 1}
                if mode == "surrogate_context":
                    context["s"] = "\ud800"
                    return {"ok": True}
                if mode == "nan_result":
                    return {"x": float("nan")}
                if mode == "infinity_context":
                    context["x"] = float("inf")
                    return {"ok": True}
                if mode == "huge_int_result":
                    return {"x": [10 ** 5000]}
                if mode == "huge_int_context":
                    context["x"] = 10 ** 5000
                    return {"ok": True}
                if mode == "list":
                    context["x"] = 1
                    return [1, 2]
                if mode == "raises":
                    context["x"] = 1
                    raise ValueError("boom")
                if mode == "none":
                    return None
                if mode == "sys_exit":
                    context["x"] = 1
                    sys.exit(0)
                if mode == "unprintable":
                    raise Unprintable()
                if mode == "surrogate_message":
                    raise ValueError("caf\udce9")
                if mode == "huge_message":
                    raise ValueError("x" * (10 << 20))
                if mode == "deep_result":
                    answer = {}
                    for _ in range(10000):
                        answer = {"a": answer}
                    return answer
                if mode == "nested":
                    answer = {}
                    for _ in range(input_data["levels"] - 1):
                        answer = {"a": answer}
                    return answer
                context["calls"] = context.get("calls", 0) + 1
                return {"calls": context["calls"], "keys": sorted(k for k in context if k != "calls"), "text": input_data.get("text")}
            def management(self, action, data):
                if action == "colliding":
                    return {None: 1, "null": 2}
                if action == "surrogate":
                    return {"s": "\ud800"}
                if action == "nan":
                    return {"x": float("-inf")}
                if action == "list":
                    return [1, 2]
                if action == "none":
                    return None
                return {"ok": True}
        """;

    private readonly LoopbackRegistry _registry = new(
        new JsonObject(EvaluatorTests.Document().Where(p => p.Key != "policy_input_schema").Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone()))),
        TestBundles.Zip(("code/function.py", Policy)));

    private LocalPolicyEvaluator? _evaluator;

    private async Task<LocalPolicyEvaluator> Evaluator(LocalIsolation isolation) =>
        _evaluator = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(_registry.Url), new LocalPolicyEvaluatorOptions
        {
            PolicyRuleUri = EvaluatorTests.Uri, Isolation = isolation, RevalidateInterval = TimeSpan.FromHours(1),
            WorkerPool = new WorkerPoolOptions { Workers = 1, IsolatePolicies = false, WorkDirectory = Path.Combine(Path.GetTempPath(), "pg-sdk-workers") },
        }, TestContext.Current.CancellationToken);

    private static JsonObject Mode(string mode) => new() { ["mode"] = mode };

    public static TheoryData<LocalIsolation, string, string> EvalCases()
    {
        var cases = new TheoryData<LocalIsolation, string, string>();
        foreach (var isolation in new[] { LocalIsolation.InProcess, LocalIsolation.WorkerProcess })
        {
            cases.Add(isolation, "colliding_result", "Duplicate property 'true'");
            cases.Add(isolation, "colliding_context", "Duplicate property '1'");
            cases.Add(isolation, "surrogate_value", "'\\ud800' is a lone surrogate");
            cases.Add(isolation, "surrogate_key", "'\\udc00' is a lone surrogate");
            cases.Add(isolation, "surrogate_context", "'\\ud800' is a lone surrogate");
            cases.Add(isolation, "nan_result", "policy returned a value that is not JSON: Out of range float values are not JSON compliant");
            cases.Add(isolation, "infinity_context", "policy returned a value that is not JSON: Out of range float values are not JSON compliant");
            cases.Add(isolation, "list", $"eval of {EvaluatorTests.Uri} returned a list, not a dict");
            cases.Add(isolation, "none", $"eval of {EvaluatorTests.Uri} returned None, not a dict");
            cases.Add(isolation, "raises", "ValueError: boom");
            // Python writes no int of more than 4300 digits; the Python SDK handed such a result back locally.
            cases.Add(isolation, "huge_int_result", "policy returned a value that is not JSON: Exceeds the limit (4300 digits)");
            cases.Add(isolation, "huge_int_context", "policy returned a value that is not JSON: Exceeds the limit (4300 digits)");
            // What the policy raises, in the servers' words (the worker host's): SystemExit is the policy's error, a message
            // is cut at 16 KiB, a lone surrogate written as its escape, a __str__ that raises named.
            cases.Add(isolation, "sys_exit", "SystemExit: 0");
            cases.Add(isolation, "unprintable", "Unprintable: <str() of the Unprintable raised RuntimeError>");
            cases.Add(isolation, "surrogate_message", @"ValueError: caf\udce9");
            cases.Add(isolation, "huge_message", "more characters)");
            cases.Add(isolation, "deep_result", "nested too deep");
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(EvalCases))]
    public async Task An_eval_answer_without_a_json_form_is_a_policy_error_as_on_the_server_and_the_evaluator_serves_on(
        LocalIsolation isolation, string mode, string named)
    {
        var ev = await Evaluator(isolation);
        ev.ExecutePolicyRule(Mode("plain"))["calls"]!.GetValue<int>().ShouldBe(1);

        var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Mode(mode)));

        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        e.Reason.ShouldContain(named);
        if (mode.StartsWith("colliding", StringComparison.Ordinal)) e.Reason.ShouldContain("use string keys");
        // As on the server, nothing the failed call left in the context is kept: the count goes on from 1, with no other key.
        var next = ev.ExecutePolicyRule(new JsonObject { ["mode"] = "plain", ["text"] = "é ✓ 日本 😀" });
        next["calls"]!.GetValue<int>().ShouldBe(2);
        next["keys"]!.AsArray().Count.ShouldBe(0);
        next["text"]!.GetValue<string>().ShouldBe("é ✓ 日本 😀");
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task An_answer_nested_as_deep_as_the_server_takes_is_answered_and_a_deeper_one_is_a_policy_error(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation);
        JsonNode? level = ev.ExecutePolicyRule(new JsonObject { ["mode"] = "nested", ["levels"] = 200 });
        var depth = 0;
        for (; level is JsonObject o && o.Count > 0; depth++) level = o["a"];
        depth.ShouldBe(199); // the server answers this too; in-process calls used to fail past 64 levels with the parser's JsonException

        var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(new JsonObject { ["mode"] = "nested", ["levels"] = 300 }));
        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        e.Reason.ShouldContain("nested too deep");
    }

    public static TheoryData<LocalIsolation, string, string> ManagementCases()
    {
        var cases = new TheoryData<LocalIsolation, string, string>();
        foreach (var isolation in new[] { LocalIsolation.InProcess, LocalIsolation.WorkerProcess })
        {
            cases.Add(isolation, "colliding", "Duplicate property 'null'");
            cases.Add(isolation, "surrogate", "'\\ud800' is a lone surrogate");
            cases.Add(isolation, "nan", "policy returned a value that is not JSON: Out of range float values are not JSON compliant");
            cases.Add(isolation, "list", $"management of {EvaluatorTests.Uri} returned a list, not a dict");
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(ManagementCases))]
    public async Task A_management_answer_without_a_json_form_is_a_policy_error_as_on_the_server(LocalIsolation isolation, string action, string named)
    {
        var ev = await Evaluator(isolation);

        var e = Should.Throw<PolicyGridApiException>(() => ev.ExecuteManagementCommand(action));

        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        e.Reason.ShouldContain(named);
        ev.ExecuteManagementCommand("get")!["ok"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task Management_answering_None_is_an_empty_dict_as_on_the_server(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation);
        ev.ExecuteManagementCommand("none")!.AsObject().Count.ShouldBe(0);
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task A_class_without_eval_fails_to_load_naming_it_as_a_push_does(LocalIsolation isolation)
    {
        // It used to load in process and fail each call with an AttributeError.
        using var registry = new LoopbackRegistry(
            new JsonObject(EvaluatorTests.Document().Where(p => p.Key != "policy_input_schema").Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone()))),
            TestBundles.Zip(("code/function.py", "class AIOSv1PolicyRule:\n    def __init__(self, rule_id, settings, parameters):\n        pass\n    def evaluate(self, p, i, c):\n        return {}\n")));
        var e = await Should.ThrowAsync<PolicyGridApiException>(async () =>
        {
            await using var ev = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(registry.Url), new LocalPolicyEvaluatorOptions
            {
                PolicyRuleUri = EvaluatorTests.Uri, Isolation = isolation, RevalidateInterval = TimeSpan.FromHours(1),
                WorkerPool = new WorkerPoolOptions { Workers = 1, IsolatePolicies = false, WorkDirectory = Path.Combine(Path.GetTempPath(), "pg-sdk-workers") },
            }, TestContext.Current.CancellationToken);
            ev.ExecutePolicyRule(Mode("plain"));
        });
        e.Status.ShouldBe(422);
        e.Reason.ShouldContain("AIOSv1PolicyRule has no eval(parameters, input_data, context) method");
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess, "__init__", "AIOSv1PolicyRule.__init__ raised ValueError: no allowlist")]
    [InlineData(LocalIsolation.WorkerProcess, "__init__", "AIOSv1PolicyRule.__init__ raised ValueError: no allowlist")]
    [InlineData(LocalIsolation.InProcess, "import", "importing code/function.py raised ValueError: no allowlist")]
    [InlineData(LocalIsolation.WorkerProcess, "import", "importing code/function.py raised ValueError: no allowlist")]
    [InlineData(LocalIsolation.InProcess, "class", "code/function.py defines no AIOSv1PolicyRule class")]
    [InlineData(LocalIsolation.WorkerProcess, "class", "code/function.py defines no AIOSv1PolicyRule class")]
    public async Task A_policy_that_cannot_be_made_is_worded_as_the_servers_word_it_in_both_modes(LocalIsolation isolation, string fails, string reason)
    {
        // In process it said "loading <uri> failed: ValueError: no allowlist" (and LookupError for a missing class), where the
        // servers, WorkerProcess mode and the Python SDK name the step that failed.
        var code = fails switch
        {
            "import" => "raise ValueError('no allowlist')\n",
            "class" => "class Other:\n    pass\n",
            _ => "class AIOSv1PolicyRule:\n    def __init__(self, rule_id, settings, parameters):\n        raise ValueError('no allowlist')\n",
        };
        using var registry = new LoopbackRegistry(EvaluatorTests.Document(), TestBundles.Zip(("code/function.py", code)));
        var e = await Should.ThrowAsync<PolicyGridApiException>(async () =>
        {
            await using var ev = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(registry.Url), new LocalPolicyEvaluatorOptions
            {
                PolicyRuleUri = EvaluatorTests.Uri, Isolation = isolation, RevalidateInterval = TimeSpan.FromHours(1),
                WorkerPool = new WorkerPoolOptions { Workers = 1, IsolatePolicies = false, WorkDirectory = Path.Combine(Path.GetTempPath(), "pg-sdk-workers") },
            }, TestContext.Current.CancellationToken);
        });
        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        e.Reason.ShouldBe($"policy {EvaluatorTests.Uri} cannot be loaded: {reason}");
    }

    public async ValueTask DisposeAsync()
    {
        if (_evaluator is not null) await _evaluator.DisposeAsync();
        _registry.Dispose();
    }
}
