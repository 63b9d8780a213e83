using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Bundles;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>
/// The server's bundle cache sweep (<see cref="BundleCachePruning"/>) removes the bundle of a policy nobody ran for
/// <c>KeepUnusedFor</c>; a local job launched afterwards unpacks it again in its own process and runs.
/// </summary>
public sealed class JobBundlePruningTests : IAsyncLifetime
{
    private readonly string cache = Path.Combine("/var/tmp", "pg-job-bundles-" + Guid.NewGuid().ToString("N"));
    private GridServer server = null!;
    private HttpClient client = null!;
    private string policy = "";

    public async ValueTask InitializeAsync()
    {
        server = new GridServer
        {
            PythonWorkers = 1,
            Settings = { ["PolicyGrid:Runtime:Bundles:CacheDirectory"] = cache, ["PolicyGrid:Runtime:Bundles:KeepUnusedFor"] = "1.00:00:00" },
        };
        client = server.CreateClient();
        policy = await server.StorePolicyAsync("batch", LocalJobsTests.Policies);
    }

    public async ValueTask DisposeAsync()
    {
        await server.DisposeAsync();
        try { Directory.Delete(cache, recursive: true); } catch (IOException) { }
    }

    private async Task<JsonNode> RunJobAsync(string echo)
    {
        var submitted = await client.Post("/jobs/submit/local",
            $$$"""{"name":"t","policy_rule_uri":"{{{policy}}}","policy_rule_parameters":{},"inputs":{"mode":"echo","n":"{{{echo}}}"}}""");
        submitted.Status.ShouldBe(200, submitted.Message);
        var done = await client.Get($"/jobs/{submitted.Data!["job_id"]!.GetValue<string>()}?wait=120");
        done.Status.ShouldBe(200);
        return done.Data!;
    }

    [Fact]
    public async Task A_bundle_removed_as_unused_is_unpacked_again_by_the_next_job_which_succeeds()
    {
        var first = await RunJobAsync("first");
        first["status"]!.GetValue<string>().ShouldBe("succeeded", first["error"]?.GetValue<string>());
        var entry = Directory.GetDirectories(cache).ShouldHaveSingleItem();
        File.SetLastWriteTimeUtc(Path.Combine(entry, BundleCache.UsedMarker), DateTime.UtcNow.AddDays(-2));

        // The job ran in a process of its own: none of this server's workers holds its bundle, so the server's sweep takes it.
        (await server.Service<BundleCachePruning>().PruneAsync(TestContext.Current.CancellationToken)).ShouldBe(1);
        Directory.Exists(entry).ShouldBeFalse();

        var second = await RunJobAsync("second");
        second["status"]!.GetValue<string>().ShouldBe("succeeded", second["error"]?.GetValue<string>());
        second["result"]!["echo"]!["n"]!.GetValue<string>().ShouldBe("second");
        Directory.Exists(Path.Combine(entry, "bundle")).ShouldBeTrue();
    }
}
