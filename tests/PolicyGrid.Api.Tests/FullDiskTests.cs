using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// The embedded server with its data directory on a disk that fills up (a small tmpfs, so root on Linux): every write
/// is a 503 saying the storage is full, nothing half-written is left, what was stored reads as before, and the server
/// serves writes again once space is freed. It used to answer 500 internal_error to every one of them.
/// </summary>
public sealed class FullDiskTests
{
    [Fact]
    public async Task Writes_on_a_full_disk_are_503s_that_change_nothing_and_the_server_recovers()
    {
        using var disk = SmallDisk.Mount(8 << 20);
        await using var server = new GridServer { DataDirectory = Path.Combine(disk.Path, "data"), PythonWorkers = 1 };
        var client = server.CreateClient();
        var uri = await server.RegisterPolicyAsync("kept", GridServer.EchoPolicy);
        var code = await server.StoreBundleAsync("""
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters): pass
                def eval(self, parameters, input_data, context): return {"new": True}
                def management(self, action, data): return {}
            """);
        var before = await client.Get($"/policy/{uri}");
        var execute = $$$"""{"policy_rule_uri": "{{{uri}}}", "input_data": {"n": 1}}""";
        (await client.Post("/executor/local/execute_policy", execute)).Status.ShouldBe(200);
        var decisions = server.Service<DecisionLog>();
        await decisions.FlushAsync(TestContext.Current.CancellationToken);

        disk.Fill();

        var upload = new HttpRequestMessage(HttpMethod.Post, "/bundles")
        {
            Content = new ByteArrayContent(GridServer.Zip(("code/function.py", GridServer.EchoPolicy), ("code/blob.txt", new string('x', 64 * 1024))))
            { Headers = { ContentType = new MediaTypeHeaderValue("application/zip") } },
        };
        var uploaded = await client.Exchange(upload);
        uploaded.Status.ShouldBe(503, uploaded.Body?.ToJsonString());
        uploaded.Code.ShouldBe(ErrorCodes.BackendUnavailable);
        uploaded.Message.ShouldBe("the server's storage is full (no space left on device); retry once space has been freed on the server's disk");
        Directory.EnumerateFiles(Path.Combine(server.DataDirectory, "bundles"), "*.tmp", SearchOption.AllDirectories).ShouldBeEmpty();

        var created = await client.Send(HttpMethod.Post, "/policy", NewPolicy(code));
        created.Status.ShouldBe(503, created.Body?.ToJsonString());
        created.Message.ShouldStartWith("the server's storage is full (SQLite error 13: database or disk is full)");
        (await client.Get("/policy/fresh:1.0-test")).Status.ShouldBe(404);

        var updated = await client.Put($"/policy/{uri}", $$$"""{"$set": {"description": "{{{new string('d', 64 * 1024)}}}"}}""");
        updated.Status.ShouldBe(503, updated.Body?.ToJsonString());
        var after = await client.Get($"/policy/{uri}");
        after.Status.ShouldBe(200);
        after.Data!.ToJsonString().ShouldBe(before.Data!.ToJsonString());

        // A call that writes nothing but its decision still runs; the decision is lost, and readiness says so.
        (await client.Post("/executor/local/execute_policy", execute)).Status.ShouldBe(200);
        await decisions.FlushAsync(TestContext.Current.CancellationToken);
        var unready = await client.Get("/readyz");
        unready.Status.ShouldBe(503);
        unready.Body!["reason"]!.GetValue<string>().ShouldStartWith("decision log: 1 decision(s) could not be recorded since ");

        disk.Free();

        (await client.Send(HttpMethod.Post, "/policy", NewPolicy(code))).Status.ShouldBe(200);
        (await client.Post("/executor/local/execute_policy", execute)).Status.ShouldBe(200);
        await decisions.FlushAsync(TestContext.Current.CancellationToken);
        (await client.Get("/readyz")).Status.ShouldBe(200);
        var run = await client.Post("/executor/local/execute_policy", """{"policy_rule_uri": "fresh:1.0-test", "input_data": {}}""");
        run.Status.ShouldBe(200, run.Body?.ToJsonString());
        run.Data!["new"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task A_policy_whose_bundle_a_full_cache_disk_cannot_unpack_is_a_503_not_a_400_blaming_the_archive()
    {
        // Was 400 bad_request "the bundle is not a readable archive (zip): No space left on device : '<cache path>'".
        using var disk = SmallDisk.Mount(2 << 20);
        await using var server = new GridServer
        {
            PythonWorkers = 1,
            Settings = { ["PolicyGrid:Runtime:Bundles:CacheDirectory"] = Path.Combine(disk.Path, "cache") },
        };
        var client = server.CreateClient();
        var code = await server.StoreBundleAsync(GridServer.EchoPolicy + "\n# " + Guid.NewGuid());

        disk.Fill();

        var created = await client.Send(HttpMethod.Post, "/policy", NewPolicy(code));
        created.Status.ShouldBe(503, created.Body?.ToJsonString());
        created.Message.ShouldBe("the server's storage is full (no space left on device); retry once space has been freed on the server's disk");
        (await client.Get("/policy/fresh:1.0-test")).Status.ShouldBe(404);

        disk.Free();

        var again = await client.Send(HttpMethod.Post, "/policy", NewPolicy(code));
        again.Status.ShouldBe(200, again.Body?.ToJsonString());
    }

    private static JsonObject NewPolicy(string code) => new()
    {
        ["name"] = "fresh", ["version"] = "1.0", ["release_tag"] = "test", ["code"] = code, ["type"] = "python_class_v1",
    };
}
