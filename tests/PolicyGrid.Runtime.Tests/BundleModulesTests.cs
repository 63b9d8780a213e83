using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// A bundle's function.py imports its own sibling modules (code/helpers.py) and its own requirements (site-packages),
/// also in a worker that imported another bundle's modules of the same names first: an earlier revision of the policy,
/// or another policy sharing the worker. One interpreter holds one <c>helpers</c> in sys.modules, so before the fix
/// a new revision's function.py ran with the old revision's helpers.py.
/// </summary>
public sealed class BundleModulesTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string FunctionPy = """
        import os

        import helpers
        import vendored

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass

            def eval(self, parameters, input_data, context):
                return {"helpers": helpers.VALUE, "vendored": vendored.VALUE, "pid": os.getpid()}
        """;

    // A bundle whose code/helpers.py and site-packages/vendored.py both say `value`.
    private static BundleDirectory Bundle(string value)
    {
        var bundle = TestBundles.FromSource(FunctionPy);
        File.WriteAllText(Path.Combine(bundle.Root, "code", "helpers.py"), $"VALUE = \"{value}\"\n");
        var sitePackages = Path.Combine(bundle.Root, "site-packages");
        Directory.CreateDirectory(sitePackages);
        File.WriteAllText(Path.Combine(sitePackages, "vendored.py"), $"VALUE = \"{value}\"\n");
        return bundle with { SitePackages = sitePackages };
    }

    // What the policy's modules say, and the worker it ran in: all calls of a test must share one, or it proves nothing.
    private readonly HashSet<int> workers = [];

    private async Task<(string Helpers, string Vendored)> EvalAsync(PythonWorkerPool pool, string uri, BundleDirectory bundle)
    {
        var result = await PoolFixture.EvalAsync(pool, uri, bundle);
        workers.Add(result["pid"]!.GetValue<int>());
        workers.Count.ShouldBe(1, "every call of the test should run in the one worker");
        return (result["helpers"]!.GetValue<string>(), result["vendored"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_new_revision_runs_its_own_helpers_and_requirements_in_a_worker_that_ran_the_old_ones()
    {
        await using var pool = PoolFixture.NewPool(workers: 1);
        var first = Bundle("first");
        var second = Bundle("second");

        (await EvalAsync(pool, "modules:1.0", first)).ShouldBe(("first", "first"));
        (await EvalAsync(pool, "modules:2.0", second)).ShouldBe(("second", "second"), "the new revision ran the old revision's modules");
        // The instance of the first, still warm, keeps the modules it was made with.
        (await EvalAsync(pool, "modules:1.0", first)).ShouldBe(("first", "first"));
    }

    [Fact]
    public async Task Policies_sharing_a_worker_each_run_their_own_helpers()
    {
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.IsolatePolicies = false);
        (await EvalAsync(pool, "modules-a:1.0", Bundle("a"))).ShouldBe(("a", "a"));
        (await EvalAsync(pool, "modules-b:1.0", Bundle("b"))).ShouldBe(("b", "b"), "the second policy ran the first one's modules");
    }
}
