using System.Text.Json.Nodes;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;
using PolicyGrid.TestSupport;

namespace PolicyGrid.Sdk.Tests;

/// <summary>
/// What a governance caller relies on: a local evaluator never answers from a revision the registry has
/// moved past once it could know, and in-process calls on one evaluator do not interleave on its context.
/// </summary>
public sealed class FailClosedTests : IAsyncDisposable
{
    private readonly LoopbackRegistry _registry = new(EvaluatorTests.Document(), TestBundles.AllowlistZip());
    private readonly string _cache = Directory.CreateTempSubdirectory("pg-sdk-cache-").FullName;
    private readonly List<LocalPolicyEvaluator> _made = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var e in _made) await e.DisposeAsync();
        _registry.Dispose();
        Directory.Delete(_cache, recursive: true);
    }

    private async Task<LocalPolicyEvaluator> Evaluator(TimeSpan revalidate)
    {
        var options = new LocalPolicyEvaluatorOptions { PolicyRuleUri = EvaluatorTests.Uri, CacheDirectory = _cache, RevalidateInterval = revalidate };
        var e = await LocalPolicyEvaluator.CreateAsync(new PolicyGridClient(_registry.Url, null, TimeSpan.FromSeconds(2)), options, TestContext.Current.CancellationToken);
        _made.Add(e);
        return e;
    }

    private static JsonObject Ip(string ip) => new() { ["ip"] = ip };

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
}
