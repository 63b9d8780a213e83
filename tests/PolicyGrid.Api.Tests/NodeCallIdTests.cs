using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Api.Node;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// The node API runs a call that carries <c>X-PolicyGrid-Call-Id</c> once: daprd retries a call whose connection
/// failed, also after it reached the node, and the policy then ran twice (a counter counted one request twice).
/// </summary>
public sealed class NodeCallIdTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    /// <summary>Counts its runs in its context (and sleeps input_data.sleep seconds first).</summary>
    internal const string CountingPolicy = """
        import time
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                time.sleep(float(input_data.get("sleep", 0)))
                context["runs"] = context.get("runs", 0) + 1
                return {"runs": context["runs"]}
            def management(self, action, data):
                return {"action": action}
        """;

    private static HttpRequestMessage NodeCall(string path, string body, string? callId)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (callId is not null) request.Headers.TryAddWithoutValidation(NodeCallLedger.Header, callId);
        return request;
    }

    private Task<Answer> Execute(string uri, string input, string? callId) =>
        client.Exchange(NodeCall("/execute_policy", Onboarding.Execute(uri, input), callId));

    [Fact]
    public async Task A_call_delivered_twice_with_one_id_runs_once_and_both_deliveries_get_its_answer()
    {
        var uri = await server.RegisterPolicyAsync(Unique("once"), CountingPolicy);
        var id = Guid.NewGuid().ToString("N");

        var first = await Execute(uri, "{}", id);
        var again = await Execute(uri, "{}", id);

        first.Status.ShouldBe(200, first.Body?.ToJsonString());
        again.Status.ShouldBe(200, again.Body?.ToJsonString());
        again.Data!["runs"]!.GetValue<int>().ShouldBe(1);
        // A new call (a new id, or none) runs: the counter saw the first call once.
        (await Execute(uri, "{}", Guid.NewGuid().ToString("N"))).Data!["runs"]!.GetValue<int>().ShouldBe(2);
        (await Execute(uri, "{}", null)).Data!["runs"]!.GetValue<int>().ShouldBe(3);
    }

    [Fact]
    public async Task A_retry_after_the_first_delivery_lost_its_connection_mid_run_gets_that_runs_answer()
    {
        var uri = await server.RegisterPolicyAsync(Unique("dropped"), CountingPolicy);
        var id = Guid.NewGuid().ToString("N");
        using (var drop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken))
        {
            drop.CancelAfter(TimeSpan.FromMilliseconds(300));
            // The connection goes while the policy runs: before, the node stopped the run with it.
            await Should.ThrowAsync<OperationCanceledException>(() =>
                client.SendAsync(NodeCall("/execute_policy", Onboarding.Execute(uri, """{"sleep": 1.5}"""), id), drop.Token));
        }

        var retry = await Execute(uri, """{"sleep": 1.5}""", id);

        retry.Status.ShouldBe(200, retry.Body?.ToJsonString());
        retry.Data!["runs"]!.GetValue<int>().ShouldBe(1);
        // One run, not a stopped one and a second: the node's decision log has one entry for both deliveries.
        var decisions = await client.Post("/decisions/query", $$"""{"policy_rule_uri": "{{uri}}"}""");
        decisions.Data!.AsArray().Select(d => d!["outcome"]!.GetValue<string>()).ShouldBe(["result"]);
        (await Execute(uri, "{}", null)).Data!["runs"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task Two_deliveries_at_once_run_the_policy_once()
    {
        var uri = await server.RegisterPolicyAsync(Unique("together"), CountingPolicy);
        var id = Guid.NewGuid().ToString("N");

        var answers = await Task.WhenAll(Execute(uri, """{"sleep": 0.5}""", id), Execute(uri, """{"sleep": 0.5}""", id));

        answers.ShouldAllBe(a => a.Status == 200);
        answers.Select(a => a.Data!["runs"]!.GetValue<int>()).ShouldBe([1, 1]);
        (await Execute(uri, "{}", null)).Data!["runs"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task One_id_for_a_different_body_is_a_409_and_runs_nothing()
    {
        var uri = await server.RegisterPolicyAsync(Unique("reused"), CountingPolicy);
        var id = Guid.NewGuid().ToString("N");
        (await Execute(uri, "{}", id)).Status.ShouldBe(200);

        var other = await Execute(uri, """{"sleep": 0}""", id);

        other.Status.ShouldBe(409, other.Body?.ToJsonString());
        other.Message!.ShouldContain(NodeCallLedger.Header);
        other.Message!.ShouldContain("different");
        (await Execute(uri, "{}", null)).Data!["runs"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task Management_with_a_call_id_runs_once_too_and_an_id_is_per_route()
    {
        var uri = await server.RegisterPolicyAsync(Unique("manage"), CountingPolicy);
        var id = Guid.NewGuid().ToString("N");
        var body = $$$"""{"policy_rule_uri": "{{{uri}}}", "action": "flush", "data": {}}""";

        var first = await client.Exchange(NodeCall("/management", body, id));
        var again = await client.Exchange(NodeCall("/management", body, id));
        var execute = await Execute(uri, "{}", id); // the same id on the other route is another call

        first.Status.ShouldBe(200, first.Body?.ToJsonString());
        again.Status.ShouldBe(200);
        again.Data!["action"]!.GetValue<string>().ShouldBe("flush");
        execute.Status.ShouldBe(200, execute.Body?.ToJsonString());
        execute.Data!["runs"]!.GetValue<int>().ShouldBe(1);
    }

    [Theory]
    [InlineData("has space")]
    [InlineData("LONG")]
    public async Task A_call_id_that_is_not_1_to_128_visible_characters_is_a_400_naming_the_header(string id)
    {
        var uri = await server.RegisterPolicyAsync(Unique("badid"), CountingPolicy);
        if (id == "LONG") id = new string('a', 129);

        var answer = await Execute(uri, "{}", id);

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Body!.ToJsonString().ShouldContain(NodeCallLedger.Header);
        (await Execute(uri, "{}", null)).Data!["runs"]!.GetValue<int>().ShouldBe(1);
    }
}

/// <summary>What the node's ledger keeps, and for how long.</summary>
public sealed class NodeCallLedgerTests
{
    private static readonly CallerIdentity Caller = new("registry");
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(429)]
    [InlineData(503)]
    public async Task An_answer_that_the_policy_did_not_run_or_its_effects_were_lost_is_not_kept_so_the_retry_runs(int status)
    {
        var ledger = new NodeCallLedger(TimeProvider.System);
        var calls = 0;
        Task<PolicyResult> Run(CancellationToken _) => ++calls == 1
            ? throw new PolicyGridException(status, status == 429 ? ErrorCodes.Overloaded : ErrorCodes.BackendUnavailable, "not now")
            : Task.FromResult(new PolicyResult(new JsonObject { ["call"] = calls }));

        await Should.ThrowAsync<PolicyGridException>(() => ledger.RunOnceAsync("id-1", "execute_policy", Caller, "h", Run, Ct));
        var retried = await ledger.RunOnceAsync("id-1", "execute_policy", Caller, "h", Run, Ct);

        retried.Output["call"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task A_policy_error_is_kept_like_a_result_so_the_retry_gets_it_without_a_second_run()
    {
        var ledger = new NodeCallLedger(TimeProvider.System);
        var calls = 0;
        Task<PolicyResult> Run(CancellationToken _)
        {
            calls++;
            throw Problems.PolicyError("ValueError: no");
        }

        await Should.ThrowAsync<PolicyGridException>(() => ledger.RunOnceAsync("id-2", "execute_policy", Caller, "h", Run, Ct));
        var again = await Should.ThrowAsync<PolicyGridException>(() => ledger.RunOnceAsync("id-2", "execute_policy", Caller, "h", Run, Ct));

        again.Status.ShouldBe(422);
        calls.ShouldBe(1);
    }

    [Fact]
    public async Task An_id_is_the_callers_own_and_is_forgotten_after_the_keeping_time()
    {
        var clock = new ManualClock();
        var ledger = new NodeCallLedger(clock);
        var calls = 0;
        Task<PolicyResult> Run(CancellationToken _) => Task.FromResult(new PolicyResult(new JsonObject { ["call"] = ++calls }));

        (await ledger.RunOnceAsync("id-3", "execute_policy", Caller, "h", Run, Ct)).Output["call"]!.GetValue<int>().ShouldBe(1);
        (await ledger.RunOnceAsync("id-3", "execute_policy", new CallerIdentity("someone-else"), "h", Run, Ct)).Output["call"]!.GetValue<int>().ShouldBe(2);
        clock.Advance(NodeCallLedger.Keep - TimeSpan.FromSeconds(1));
        (await ledger.RunOnceAsync("id-3", "execute_policy", Caller, "h", Run, Ct)).Output["call"]!.GetValue<int>().ShouldBe(1);
        clock.Advance(TimeSpan.FromSeconds(2));
        (await ledger.RunOnceAsync("id-3", "execute_policy", Caller, "h", Run, Ct)).Output["call"]!.GetValue<int>().ShouldBe(3);
    }

    [Fact]
    public async Task Past_the_byte_limit_the_oldest_answers_are_forgotten_first()
    {
        var ledger = new NodeCallLedger(TimeProvider.System) { KeptBytesLimit = 2_500 };
        var calls = 0;
        Task<PolicyResult> Run(CancellationToken _) => Task.FromResult(new PolicyResult(new JsonObject { ["call"] = ++calls, ["pad"] = new string('x', 1_000) }));

        foreach (var id in new[] { "a", "b", "c" }) await ledger.RunOnceAsync(id, "execute_policy", Caller, "h", Run, Ct);

        (await ledger.RunOnceAsync("c", "execute_policy", Caller, "h", Run, Ct)).Output["call"]!.GetValue<int>().ShouldBe(3);
        (await ledger.RunOnceAsync("b", "execute_policy", Caller, "h", Run, Ct)).Output["call"]!.GetValue<int>().ShouldBe(2);
        (await ledger.RunOnceAsync("a", "execute_policy", Caller, "h", Run, Ct)).Output["call"]!.GetValue<int>().ShouldBe(4);
    }

    private sealed class ManualClock : TimeProvider
    {
        private long now;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => now;
        public void Advance(TimeSpan by) => now += by.Ticks;
    }
}
