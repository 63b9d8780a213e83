using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;

namespace PolicyGrid.Sdk.Tests;

/// <summary>
/// The context a local evaluator hands the next call is the one the servers would: read back from its JSON, in
/// either isolation. In-process, the next call used to get the very objects the last one left.
/// </summary>
public sealed class ContextAsOnTheServerTests : IAsyncDisposable
{
    private const string Policy = """
        import datetime

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.seen = None
            def eval(self, parameters, input_data, context):
                mode = input_data["mode"]
                if mode == "store":
                    context["pair"] = (1, 2)
                    context[7] = "seven"
                    self.seen = context.setdefault("seen", [])
                    self.seen.append("first")
                    return {}
                if mode == "mutate_held":
                    self.seen.append("behind the context's back")  # on a server this list is no longer the context's
                    return {}
                if mode == "datetime":
                    context["at"] = datetime.datetime(2026, 1, 1)
                    return {}
                return {"pair": type(context.get("pair")).__name__, "keys": sorted(map(repr, context)), "seen": context.get("seen")}
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

    private static async Task<JsonObject> Call(LocalPolicyEvaluator ev, string mode) =>
        await ev.ExecutePolicyRuleAsync(new JsonObject { ["mode"] = mode }, ct: TestContext.Current.CancellationToken);

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task The_next_call_sees_the_context_as_json_gives_it_back_not_the_objects_the_last_one_left(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation);
        await Call(ev, "store");
        await Call(ev, "mutate_held");
        var seen = await Call(ev, "read");
        seen["pair"]!.GetValue<string>().ShouldBe("list");
        seen["keys"]!.AsArray().Select(k => k!.GetValue<string>()).ShouldBe(["'7'", "'pair'", "'seen'"]);
        seen["seen"]!.AsArray().Select(k => k!.GetValue<string>()).ShouldBe(["first"]);
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task A_context_holding_what_json_cannot_is_the_server_s_policy_error_and_is_not_kept(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation);
        await Call(ev, "store");
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Call(ev, "datetime"));
        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        e.Reason.ShouldContain("Object of type datetime is not JSON serializable");
        (await Call(ev, "read"))["keys"]!.AsArray().Select(k => k!.GetValue<string>()).ShouldBe(["'7'", "'pair'", "'seen'"]);
    }

    public async ValueTask DisposeAsync()
    {
        if (_evaluator is not null) await _evaluator.DisposeAsync();
        _registry.Dispose();
    }
}
