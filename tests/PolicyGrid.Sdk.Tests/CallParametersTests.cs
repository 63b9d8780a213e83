using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;

namespace PolicyGrid.Sdk.Tests;

/// <summary>
/// A call's own parameters in both local isolations, as an executor applies them: it makes the policy's instance with them, so
/// __init__ sees them. Local modes ran such a call on the instance made with the evaluator's parameters, handing the call's to
/// eval only: a policy reading them in __init__ denied locally what remote mode allowed.
/// </summary>
public sealed class CallParametersTests : IAsyncDisposable
{
    // Reads its allowlist in __init__ only, as samples/policies/ip_allowlist does.
    private const string Policy = """
        inits = [0]

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                inits[0] += 1
                self.allow = list(parameters.get("local_allowlist", []))
            def eval(self, parameters, input_data, context):
                if input_data["ip"] == "raise":
                    context["calls"] = -100
                    raise ValueError("refused")
                if input_data["ip"] == "list":
                    context["calls"] = -200
                    return ["not", "a", "dict"]
                context["calls"] = context.get("calls", 0) + 1
                return {"allowed": input_data["ip"] in self.allow, "calls": context["calls"], "inits": inits[0]}
            def management(self, action, data):
                self.allow = list(data["ips"])
                return {"local_allowlist": self.allow}
        """;

    // The stored parameters allow 10.0.0.1; no input schema, so that "raise" reaches the policy.
    private readonly LoopbackRegistry _registry = new(
        new JsonObject(EvaluatorTests.Document().Where(p => p.Key != "policy_input_schema").Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone()))),
        TestBundles.Zip(("code/function.py", Policy)));

    private LocalPolicyEvaluator? _evaluator;

    private async Task<LocalPolicyEvaluator> Evaluator(LocalIsolation isolation, int maxInstancesPerWorker = 64, int workers = 1) =>
        _evaluator = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(_registry.Url), new LocalPolicyEvaluatorOptions
        {
            PolicyRuleUri = EvaluatorTests.Uri, Isolation = isolation, RevalidateInterval = TimeSpan.FromHours(1),
            WorkerPool = new WorkerPoolOptions
            {
                Workers = workers, IsolatePolicies = false, WorkDirectory = Path.Combine(Path.GetTempPath(), "pg-sdk-workers"),
                MaxInstancesPerWorker = maxInstancesPerWorker,
            },
        }, TestContext.Current.CancellationToken);

    private static JsonObject Allow(params string[] ips) => new() { ["local_allowlist"] = new JsonArray([.. ips.Select(ip => (JsonNode)ip)]) };

    private static JsonObject Call(LocalPolicyEvaluator ev, string ip, JsonObject? parameters = null) =>
        ev.ExecutePolicyRule(new JsonObject { ["ip"] = ip }, parameters);

    private static bool Allowed(LocalPolicyEvaluator ev, string ip, JsonObject? parameters = null) =>
        Call(ev, ip, parameters)["allowed"]!.GetValue<bool>();

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task A_call_s_parameters_reach_init_as_on_an_executor_and_management_stays_with_the_held_instance(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation);
        Allowed(ev, "10.0.0.7", Allow("10.0.0.7")).ShouldBeTrue();
        Allowed(ev, "10.0.0.1", Allow("10.0.0.7")).ShouldBeFalse();
        Allowed(ev, "10.0.0.1").ShouldBeTrue(); // without an override, the evaluator's own instance
        (await ev.ExecutePolicyRuleAsync(new JsonObject { ["ip"] = "10.0.0.7" }, Allow("10.0.0.7"), TestContext.Current.CancellationToken))
            ["allowed"]!.GetValue<bool>().ShouldBeTrue();

        // The evaluator's own parameters given again run on its instance, the one management commands change.
        ev.ExecuteManagementCommand("update_local_allowlist", new JsonObject { ["ips"] = new JsonArray("10.0.0.8") });
        Allowed(ev, "10.0.0.8").ShouldBeTrue();
        Allowed(ev, "10.0.0.8", Allow("10.0.0.1")).ShouldBeTrue();
        Allowed(ev, "10.0.0.8", Allow("10.0.0.7")).ShouldBeFalse(); // an instance made with the override is not the held one

        // One context for all of them, as on a server (the policy URI is the context key).
        Call(ev, "10.0.0.7", Allow("10.0.0.7"))["calls"]!.GetValue<int>().ShouldBe(8);
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task A_call_failing_on_an_override_s_instance_keeps_what_the_other_instances_saved(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation);
        Call(ev, "10.0.0.7", Allow("10.0.0.7"))["calls"]!.GetValue<int>().ShouldBe(1);
        Call(ev, "10.0.0.1")["calls"]!.GetValue<int>().ShouldBe(2);
        Call(ev, "10.0.0.1")["calls"]!.GetValue<int>().ShouldBe(3);
        var e = Should.Throw<PolicyGridApiException>(() => Call(ev, "raise", Allow("10.0.0.7")));
        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        e.Reason.ShouldContain("ValueError: refused");
        // Nothing of the failed call is kept, and nothing the held instance's calls saved is undone.
        Call(ev, "10.0.0.1")["calls"]!.GetValue<int>().ShouldBe(4);
        Should.Throw<PolicyGridApiException>(() => Call(ev, "raise"));
        Call(ev, "10.0.0.7", Allow("10.0.0.7"))["calls"]!.GetValue<int>().ShouldBe(5);
        // The same for an answer that is no dict (in-process, the context it left is taken back after the call).
        Call(ev, "10.0.0.1")["calls"]!.GetValue<int>().ShouldBe(6);
        Should.Throw<PolicyGridApiException>(() => Call(ev, "list", Allow("10.0.0.7"))).Reason.ShouldContain("returned a list, not a dict");
        Call(ev, "10.0.0.1")["calls"]!.GetValue<int>().ShouldBe(7);
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task More_distinct_sets_than_kept_all_keep_answering_as_their_parameters_say(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation);
        var sets = Enumerable.Range(1, ParameterInstances.Capacity + 1).Select(i => $"10.0.1.{i}").ToArray();
        foreach (var ip in sets)
        {
            Allowed(ev, ip, Allow(ip)).ShouldBeTrue();
            Allowed(ev, "10.0.0.1", Allow(ip)).ShouldBeFalse();
        }
        foreach (var ip in sets.Reverse()) Allowed(ev, ip, Allow(ip)).ShouldBeTrue(); // the first ones were dropped and made again
        Allowed(ev, "10.0.0.1").ShouldBeTrue();
        ev.ExecuteManagementCommand("update_local_allowlist", new JsonObject { ["ips"] = new JsonArray("10.0.0.9") });
        Allowed(ev, "10.0.0.9").ShouldBeTrue();
        Allowed(ev, "10.0.0.9", Allow(sets[0])).ShouldBeFalse();
        Call(ev, "10.0.0.9")["calls"]!.GetValue<int>().ShouldBe(sets.Length * 3 + 4);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(1, 2)] // two workers: the pool also forgot the instance's route, and could make it again on the other one
    public async Task A_worker_with_room_for_fewer_instances_than_kept_never_drops_the_evaluator_s_own(int maxInstancesPerWorker, int workers)
    {
        // The worker dropped its least recently used instance past MaxInstancesPerWorker, the evaluator's own included: the
        // next call made it again from its spec, and what the management command did was silently gone.
        var ev = await Evaluator(LocalIsolation.WorkerProcess, maxInstancesPerWorker, workers);
        ev.ExecuteManagementCommand("update_local_allowlist", new JsonObject { ["ips"] = new JsonArray("10.0.0.8") });
        foreach (var ip in new[] { "10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5" }) Allowed(ev, ip, Allow(ip)).ShouldBeTrue();
        Allowed(ev, "10.0.0.8").ShouldBeTrue();
        Allowed(ev, "10.0.0.1").ShouldBeFalse();
        // The instances made for the calls' parameters are still dropped past the cap, and made again when needed.
        Allowed(ev, "10.0.1.1", Allow("10.0.1.1")).ShouldBeTrue();
        Call(ev, "10.0.0.8")["calls"]!.GetValue<int>().ShouldBe(9);
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task A_cancelled_call_with_new_parameters_makes_no_instance_and_runs_nothing(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation);
        // In-process, the module (and its count) is one per bundle and process: what counts is that it does not move.
        var inits = Call(ev, "10.0.0.1")["inits"]!.GetValue<int>();
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(() => ev.ExecutePolicyRuleAsync(new JsonObject { ["ip"] = "10.0.0.7" }, Allow("10.0.0.7"), cancelled.Token));
        var next = Call(ev, "10.0.0.1");
        next["inits"]!.GetValue<int>().ShouldBe(inits); // the cancelled call ran no __init__
        next["calls"]!.GetValue<int>().ShouldBe(2);
        Call(ev, "10.0.0.7", Allow("10.0.0.7"))["inits"]!.GetValue<int>().ShouldBe(inits + 1);
    }

    [Theory]
    [InlineData(LocalIsolation.InProcess)]
    [InlineData(LocalIsolation.WorkerProcess)]
    public async Task After_an_update_a_call_s_parameters_still_apply_on_the_new_revision_with_the_context_carried_over(LocalIsolation isolation)
    {
        var ev = await Evaluator(isolation);
        Allowed(ev, "10.0.0.7", Allow("10.0.0.7")).ShouldBeTrue();
        _registry.Update(d => d["policy_parameters"] = Allow("10.0.0.9"));
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        Allowed(ev, "10.0.0.9").ShouldBeTrue();
        Allowed(ev, "10.0.0.1").ShouldBeFalse();
        Allowed(ev, "10.0.0.7", Allow("10.0.0.7")).ShouldBeTrue();
        Call(ev, "10.0.0.1", Allow("10.0.0.1"))["calls"]!.GetValue<int>().ShouldBe(5);
    }

    public async ValueTask DisposeAsync()
    {
        if (_evaluator is not null) await _evaluator.DisposeAsync();
        _registry.Dispose();
    }
}
