using System.Text.Json.Nodes;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;
using PolicyGrid.TestSupport;

namespace PolicyGrid.Sdk.Tests;

/// <summary>
/// What a governance caller relies on: a local evaluator never answers from a revision the registry has
/// moved past once it could know, and in-process calls on one evaluator do not interleave on its context.
/// </summary>
public sealed class FailClosedTests : LoopbackRegistryTests
{
    private async Task<LocalPolicyEvaluator> Evaluator(TimeSpan revalidate, TimeSpan? maxStaleness = null)
    {
        var options = new LocalPolicyEvaluatorOptions { PolicyRuleUri = EvaluatorTests.Uri, CacheDirectory = _cache, RevalidateInterval = revalidate };
        if (maxStaleness is { } m) options = options with { MaxStaleness = m };
        // The client's timeout is far above what any assertion here allows, so a call found waiting on a hung re-read fails
        // the test by its own bound; at 2 s, creating the evaluator itself timed out once on a host at load ~40.
        var e = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(_registry.Url, null, TimeSpan.FromSeconds(30)), options, TestContext.Current.CancellationToken);
        _made.Add(e);
        return e;
    }

    private static JsonObject Ip(string ip) => new() { ["ip"] = ip };

    [Fact]
    public async Task A_call_long_after_the_last_revalidation_sees_a_retirement_made_meanwhile()
    {
        var ev = await Evaluator(TimeSpan.FromMilliseconds(100));
        _registry.Update(d => d["status"] = "retired");
        // Idle for several intervals: the held revision is long past due when the next call comes.
        await Task.Delay(400, TestContext.Current.CancellationToken);
        var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1")));
        (e.Status, e.Code).ShouldBe((410, "retired"));
    }

    [Fact]
    public async Task A_revision_that_cannot_be_loaded_is_not_replaced_by_the_one_it_superseded()
    {
        var ev = await Evaluator(TimeSpan.FromHours(1));
        // The registry now names a new bundle, but what it serves does not match the hash.
        _registry.ReplaceBundle(TestBundles.Zip(("code/function.py", "class AIOSv1PolicyRule: pass  # v2\n")));
        _registry.Tampered = TestBundles.AllowlistZip();
        (await Should.ThrowAsync<PolicyGridApiException>(() => ev.RefreshAsync(TestContext.Current.CancellationToken))).Reason.ShouldContain("failed verification");
        var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1")));
        (e.Status, e.Code).ShouldBe((502, "backend_error"));
        e.Reason.ShouldContain("failed verification");
        // Once the registry serves the right bytes, the next revalidation loads the new revision.
        _registry.Tampered = null;
        _registry.ReplaceBundle(TestBundles.AllowlistZip());
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task In_process_calls_from_many_threads_do_not_lose_context_updates()
    {
        _registry.ReplaceBundle(TestBundles.Zip(("code/function.py", """
            import time
            class AIOSv1PolicyRule:
                def __init__(self, r, s, p): pass
                def eval(self, p, i, context):
                    n = context.get("n", 0)
                    time.sleep(0.0005)  # any I/O in a policy lets another thread's call run here
                    context["n"] = n + 1
                    return {"n": context["n"]}
            """)));
        var ev = await Evaluator(TimeSpan.FromHours(1));
        var seen = new System.Collections.Concurrent.ConcurrentBag<int>();
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < 25; i++) seen.Add(ev.ExecutePolicyRule(Ip("10.0.0.1"))["n"]!.GetValue<int>());
        }, TestContext.Current.CancellationToken)));
        seen.Distinct().Count().ShouldBe(200);
        seen.Max().ShouldBe(200);
    }

    [Fact]
    public async Task A_held_policy_is_served_through_a_short_outage_and_refused_past_max_staleness()
    {
        var ev = await Evaluator(TimeSpan.FromMilliseconds(50), maxStaleness: TimeSpan.FromMilliseconds(500));
        _registry.Down = true; // the store behind the registry fails: 503
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        await Task.Delay(700, TestContext.Current.CancellationToken);
        var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1")));
        (e.Status, e.Code).ShouldBe((503, "backend_unavailable"));
        e.Reason.ShouldContain("has not confirmed revision");
        e.Reason.ShouldContain("store down");
        // The registry back: the next re-read confirms the revision and calls answer again.
        _registry.Down = false;
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Calls_answer_from_the_held_revision_while_a_reread_hangs()
    {
        // A re-read in flight on a hung registry (here a RefreshAsync, then the background re-read queued behind it) made
        // every call past two intervals wait for it, up to the client's timeout (10 s by default, so with a
        // 1 s interval a busy evaluator stalled for about 8 s), as if the evaluator had been idle.
        var ct = TestContext.Current.CancellationToken;
        var ev = await Evaluator(TimeSpan.FromMilliseconds(50));
        var hold = new TaskCompletionSource();
        _registry.HoldPolicyReads = hold;
        try
        {
            var refresh = ev.RefreshAsync(ct);
            await _registry.ReadHeld.Task.WaitAsync(TimeSpan.FromSeconds(5), ct);
            await Task.Delay(200, ct); // four intervals pass while it hangs
            var watch = System.Diagnostics.Stopwatch.StartNew();
            for (var i = 0; i < 3; i++) ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
            watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(1));
            _registry.HoldPolicyReads = null;
            hold.SetResult();
            await refresh;
        }
        finally
        {
            _registry.HoldPolicyReads = null;
            hold.TrySetResult();
        }
    }

    [Fact]
    public async Task A_call_waiting_for_the_reread_after_a_quiet_spell_ends_when_its_token_fires()
    {
        // After a quiet spell a call waits for the re-read (so a retirement made meanwhile is not answered around). On a
        // hung registry that wait ignored the call's token: a cancelled request was held until the client's timeout.
        var ct = TestContext.Current.CancellationToken;
        var ev = await Evaluator(TimeSpan.FromMilliseconds(50));
        await Task.Delay(200, ct); // idle for four intervals
        var hold = new TaskCompletionSource();
        _registry.HoldPolicyReads = hold;
        try
        {
            using var cts = new CancellationTokenSource();
            // In-process, the call runs on the caller's thread up to the policy: that thread waits, the test's goes on.
            var call = Task.Run(() => ev.ExecutePolicyRuleAsync(Ip("10.0.0.1"), ct: cts.Token), ct);
            await _registry.ReadHeld.Task.WaitAsync(TimeSpan.FromSeconds(5), ct);
            await cts.CancelAsync();
            var watch = System.Diagnostics.Stopwatch.StartNew();
            await Should.ThrowAsync<OperationCanceledException>(() => call);
            watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(1)); // not the client's timeout
        }
        finally
        {
            _registry.HoldPolicyReads = null;
            hold.TrySetResult();
        }
    }

    [Fact]
    public async Task Max_staleness_counts_only_while_rereads_fail()
    {
        var ev = await Evaluator(TimeSpan.FromHours(1), maxStaleness: TimeSpan.FromMilliseconds(100));
        await Task.Delay(200, TestContext.Current.CancellationToken); // past MaxStaleness, but no re-read was due, let alone failed
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }
}
