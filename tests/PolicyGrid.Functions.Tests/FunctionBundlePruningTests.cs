using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// A function keeps the bundle path it resolved at deployment; the bundle cache's sweep must not take it from a live
/// function, and when the directory goes anyway (another server sharing the cache swept it) the function's next instance
/// unpacks it again. Before, its worker failed to load the policy (422) once the copy was gone.
/// </summary>
public sealed class FunctionBundlePruningTests : IAsyncLifetime
{
    private readonly string cache = Path.Combine("/var/tmp", "pg-function-bundles-" + Guid.NewGuid().ToString("N"));
    private GridServer server = null!;
    private HttpClient client = null!;

    public async ValueTask InitializeAsync()
    {
        server = new GridServer
        {
            Settings = { ["PolicyGrid:Runtime:Bundles:CacheDirectory"] = cache, ["PolicyGrid:Runtime:Bundles:KeepUnusedFor"] = "1.00:00:00" },
        };
        client = server.CreateClient();
        var policy = await server.RegisterPolicyAsync("counting", CountingPolicy.Source,
            new JsonObject { ["step"] = new JsonObject { ["type"] = "integer", ["min"] = 1 } }, new JsonObject { ["step"] = 1 });
        var deployed = await client.Send(HttpMethod.Post, "/function/deployments/create/local", new JsonObject
        {
            ["name"] = "counter", ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = new JsonObject(), ["replicas"] = 1,
        });
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
    }

    public async ValueTask DisposeAsync()
    {
        await server.DisposeAsync();
        try { Directory.Delete(cache, recursive: true); } catch (IOException) { }
    }

    private async Task<int> Count()
    {
        var answer = await client.Send(HttpMethod.Post, "/function/call_function/counter", new JsonObject());
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return answer.Data!["count"]!.GetValue<int>();
    }

    [Fact]
    public async Task A_live_functions_bundle_is_kept_and_when_removed_anyway_its_next_instance_unpacks_it_again_with_its_state()
    {
        (await Count()).ShouldBe(1);
        (await Count()).ShouldBe(2);
        var entry = Directory.GetDirectories(cache).ShouldHaveSingleItem();
        File.SetLastWriteTimeUtc(Path.Combine(entry, BundleCache.UsedMarker), DateTime.UtcNow.AddDays(-30));

        (await server.Service<BundleCachePruning>().PruneAsync(TestContext.Current.CancellationToken)).ShouldBe(0);
        Directory.Exists(Path.Combine(entry, "bundle")).ShouldBeTrue();

        // Another server sharing the cache swept it (it does not know this one's workers), and this function's worker dies.
        Directory.Delete(entry, recursive: true);
        var pool = server.Service<PythonWorkerPool>();
        foreach (var worker in pool.LiveWorkers()) System.Diagnostics.Process.GetProcessById(worker.Pid).Kill();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (pool.LiveWorkers().Count > 0 && DateTime.UtcNow < deadline) await Task.Delay(10, TestContext.Current.CancellationToken);
        pool.LiveWorkers().ShouldBeEmpty();

        (await Count()).ShouldBe(3);
        Directory.Exists(Path.Combine(entry, "bundle")).ShouldBeTrue();
    }
}
