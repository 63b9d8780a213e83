using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// The workers of a policy deleted or retired while its policy event was lost (the Dapr shape) go at the next sweep, as
/// the event would have taken them; a policy that can still run, and a function still deployed from a policy deleted
/// with ?force=true, keep theirs.
/// </summary>
public sealed class GonePolicySweepTests : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly BundleDirectory Pids = TestBundles.FromSource("""
        import os

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                return {"pid": os.getpid()}
        """);

    private readonly string dir = Directory.CreateTempSubdirectory("pg-gone-sweep-").FullName;
    private readonly QueryCountingStore store;
    private readonly PolicyCatalog catalog;
    private readonly PythonWorkerPool pool = PoolFixture.NewPool(workers: 1);
    private readonly PolicyTeardown teardown;

    public GonePolicySweepTests()
    {
        store = new QueryCountingStore(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db"))));
        catalog = new PolicyCatalog(store);
        teardown = new PolicyTeardown(catalog, pool, store, NullLogger<PolicyTeardown>.Instance);
    }

    public async ValueTask DisposeAsync()
    {
        await pool.DisposeAsync();
        Directory.Delete(dir, recursive: true);
    }

    private sealed class QueryCountingStore(SqliteDocumentStore inner) : DecisionLogTests.DelegatingStore(inner)
    {
        public int Queries;

        public override Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default)
        {
            Interlocked.Increment(ref Queries);
            return base.QueryAsync(collection, query, ct);
        }
    }

    private async Task<string> StoreAsync(string name, string version, string status = PolicyStatus.Active)
    {
        var rule = PolicyRule.FromJson(new JsonObject
        {
            ["name"] = name, ["version"] = version, ["release_tag"] = "a", ["code"] = "bundle://sha256/" + new string('0', 64),
            ["type"] = "python_class_v1", ["status"] = status,
        });
        await store.UpsertAsync(Collections.Policies, rule.PolicyRuleUri, rule.ToJson(), Ct);
        return rule.PolicyRuleUri;
    }

    private async Task<int> PidAsync(string uri) => (await PoolFixture.EvalAsync(pool, uri, Pids))["pid"]!.GetValue<int>();

    // A Type 4 replica's call: its instance stays loaded until released (the function removed, the actor deactivated).
    private async Task<int> ReplicaPidAsync(string uri, string replica) =>
        (await pool.InvokeAsync(new PolicyInvocation(replica, new PolicyLoadSpec(uri, Pids, [], []), PolicyMethods.Eval,
            new JsonObject { ["parameters"] = new JsonObject(), ["input_data"] = new JsonObject(), ["context"] = new JsonObject() },
            TimeSpan.FromSeconds(10)) { KeepsWarm = true }, Ct))!["result"]!["pid"]!.GetValue<int>();

    private bool Live(int pid) => pool.LiveWorkers().Any(w => w.Pid == pid);

    [Fact]
    public async Task Policies_gone_without_their_event_lose_their_workers_and_those_that_can_run_keep_them()
    {
        var kept = await StoreAsync("kept", "2.0");
        var keptOld = await StoreAsync("kept", "1.0");
        var retired = await StoreAsync("retired", "1.0");
        var deleted = await StoreAsync("deleted", "1.0");
        var removedFunction = await StoreAsync("removed_fn", "1.0");
        await catalog.GetRunnableAsync(keptOld, Ct);
        var keptPid = await PidAsync(kept);
        var retiredPid = await PidAsync(retired);
        var deletedPid = await PidAsync(deleted);
        var removedPid = await ReplicaPidAsync(removedFunction, "fn:removed#0");
        await pool.ReleaseAsync("fn:removed#0", Ct); // the function was removed: its group keeps warm, holding nothing

        // Nothing gone yet: one read per policy whose workers run, and nothing stops.
        (await teardown.TearDownGoneAsync(Ct)).ShouldBe(0);
        store.Queries.ShouldBe(4);

        // Retired, deleted and retired again, with no event telling this process.
        await StoreAsync("kept", "1.0", PolicyStatus.Retired);
        await StoreAsync("retired", "1.0", PolicyStatus.Retired);
        await store.DeleteAsync(Collections.Policies, deleted, null, Ct);
        await store.DeleteAsync(Collections.Policies, removedFunction, null, Ct);
        var parsed = catalog.ParsedCount;

        (await teardown.TearDownGoneAsync(Ct)).ShouldBe(3);

        Live(retiredPid).ShouldBeFalse();
        Live(deletedPid).ShouldBeFalse();
        Live(removedPid).ShouldBeFalse(); // a Type 4 group is never idle-stopped: it stayed for good
        Live(keptPid).ShouldBeTrue(); // kept:2.0 still runs in the workers every version of the name shares
        catalog.ParsedCount.ShouldBe(parsed - 1); // kept:1.0's parsed document went, as its event would have taken it
        (await PidAsync(kept)).ShouldBe(keptPid);
    }

    [Fact]
    public async Task A_function_still_deployed_from_a_policy_deleted_with_force_keeps_its_workers_and_nothing_is_read_when_none_run()
    {
        (await teardown.TearDownGoneAsync(Ct)).ShouldBe(0);
        store.Queries.ShouldBe(0);

        var forced = await StoreAsync("forced", "1.0");
        var pid = await ReplicaPidAsync(forced, "fn:forced#0");
        await store.DeleteAsync(Collections.Policies, forced, null, Ct);

        // It runs its own copy: stopping its workers every sweep would restart its instance from saved state each time.
        (await teardown.TearDownGoneAsync(Ct)).ShouldBe(0);
        Live(pid).ShouldBeTrue();
        (await ReplicaPidAsync(forced, "fn:forced#0")).ShouldBe(pid);

        // Removed, it holds nothing any more: its workers go.
        await pool.ReleaseAsync("fn:forced#0", Ct);
        (await teardown.TearDownGoneAsync(Ct)).ShouldBe(1);
        Live(pid).ShouldBeFalse();
    }

    [Fact]
    public async Task Every_runtime_runs_the_sweep_and_a_negative_interval_is_refused_naming_the_setting()
    {
        static ServiceProvider Compose(string interval, string root) => new ServiceCollection().AddLogging()
            .AddEmbeddedStorage(Path.Combine(root, "data"))
            .AddPolicyRuntime(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["PolicyGrid:Runtime:Pool:GoneSweepInterval"] = interval,
                ["PolicyGrid:Runtime:Pool:WorkDirectory"] = Path.Combine(root, "workers"),
            }).Build()).BuildServiceProvider();

        await using (var services = Compose("00:05:00", dir))
            services.GetServices<IHostedService>().OfType<GonePolicySweep>().ShouldHaveSingleItem();

        await using (var services = Compose("-00:00:01", dir))
        {
            var error = Should.Throw<Microsoft.Extensions.Options.OptionsValidationException>(() => services.GetRequiredService<PolicyRuntimeOptions>());
            error.Message.ShouldContain("Pool:GoneSweepInterval");
        }
    }
}
