using System.IO.Compression;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;

namespace PolicyGrid.Sdk.Tests;

/// <summary>The real app (the composition `policygrid serve` runs) on a fresh temporary data directory.</summary>
public sealed class EmbeddedServer : WebApplicationFactory<PolicyGrid.Cli.Program>
{
    private readonly string _data = Directory.CreateTempSubdirectory("pg-sdk-server-").FullName;

    protected override IHost CreateHost(IHostBuilder builder)
    {
        builder.ConfigureHostConfiguration(c => c.AddInMemoryCollection(new Dictionary<string, string?> { ["data"] = _data }));
        return base.CreateHost(builder);
    }

    public PolicyGridClient Client()
    {
        var http = CreateClient();
        return new PolicyGridClient(http, new PolicyGridClientOptions { Server = http.BaseAddress!, Timeout = TimeSpan.FromSeconds(60) });
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        try { Directory.Delete(_data, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>samples/policies/ip_allowlist, as a policy author uploads it: the bundle and its manifest.</summary>
public static class Sample
{
    public static string Directory()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var sample = Path.Combine(dir.FullName, "samples", "policies", "ip_allowlist");
            if (File.Exists(Path.Combine(sample, "manifest.json"))) return sample;
        }
        throw new InvalidOperationException("samples/policies/ip_allowlist not found above " + AppContext.BaseDirectory);
    }

    public static byte[] Bundle()
    {
        var sample = Directory();
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var file in System.IO.Directory.EnumerateFiles(Path.Combine(sample, "code"), "*", SearchOption.AllDirectories)
                         .Where(f => !f.Contains("__pycache__", StringComparison.Ordinal)))
                zip.CreateEntryFromFile(file, Path.GetRelativePath(sample, file).Replace('\\', '/'));
        }
        return buffer.ToArray();
    }

    public static JsonObject Manifest(string code, string releaseTag)
    {
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(Directory(), "manifest.json")))!.AsObject();
        manifest["code"] = code;
        manifest["release_tag"] = releaseTag;
        return manifest;
    }
}

/// <summary>Both evaluator modes against the real server with samples/policies/ip_allowlist.</summary>
public sealed class ServerTests : IAsyncLifetime
{
    private readonly EmbeddedServer _server = new();
    private PolicyGridClient _client = null!;
    private BundleUpload _bundle = null!;
    private readonly List<LocalPolicyEvaluator> _made = [];

    public async ValueTask InitializeAsync()
    {
        _client = _server.Client();
        _bundle = await _client.UploadBundleAsync(Sample.Bundle(), ct: TestContext.Current.CancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var e in _made) await e.DisposeAsync();
        _client.Dispose();
        await _server.DisposeAsync();
    }

    private async Task<string> CreatePolicy(string tag)
    {
        var created = await _client.CreatePolicyAsync(Sample.Manifest(_bundle.Url, tag), TestContext.Current.CancellationToken);
        return created["policy_rule_uri"]!.GetValue<string>();
    }

    private async Task<LocalPolicyEvaluator> Evaluator(string uri, EvaluationMode mode = EvaluationMode.Local,
        LocalIsolation isolation = LocalIsolation.InProcess, JsonObject? parameters = null)
    {
        var e = await LocalPolicyEvaluator.CreateAsync(_client, new LocalPolicyEvaluatorOptions
        {
            PolicyRuleUri = uri, Mode = mode, Isolation = isolation, Parameters = parameters, RevalidateInterval = TimeSpan.FromHours(1),
        }, TestContext.Current.CancellationToken);
        _made.Add(e);
        return e;
    }

    private static JsonObject Ip(string ip) => new() { ["ip"] = ip };

    [Fact]
    public async Task Upload_answers_code_sha_size_and_a_downloadable_url()
    {
        _bundle.Code.ShouldBe($"bundle://sha256/{_bundle.Sha256}");
        _bundle.Url.ShouldEndWith($"/bundles/sha256/{_bundle.Sha256}");
        (await _client.DownloadBundleAsync(_bundle.Url, TestContext.Current.CancellationToken)).ShouldBe(Sample.Bundle());
    }

    [Fact]
    public async Task Local_in_process_allows_and_denies()
    {
        var ev = await Evaluator(await CreatePolicy("inproc"));
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        ev.ExecutePolicyRule(Ip("10.9.9.9"))["reason"]!.GetValue<string>().ShouldBe("denied");
    }

    [Fact]
    public async Task Local_worker_process_allows_and_denies()
    {
        var ev = await Evaluator(await CreatePolicy("worker"), isolation: LocalIsolation.WorkerProcess);
        (await ev.ExecutePolicyRuleAsync(Ip("10.0.0.1"), ct: TestContext.Current.CancellationToken))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        (await ev.ExecutePolicyRuleAsync(Ip("10.9.9.9"), ct: TestContext.Current.CancellationToken))["allowed"]!.GetValue<bool>().ShouldBeFalse();
    }

    [Fact]
    public async Task Local_management_changes_the_held_instance()
    {
        var ev = await Evaluator(await CreatePolicy("mgmt"));
        ev.ExecuteManagementCommand("update_local_allowlist", new JsonObject { ["ips"] = new JsonArray("10.7.7.7") });
        ev.ExecutePolicyRule(Ip("10.7.7.7"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        ev.ExecuteManagementCommand("get_state")!["local_allowlist"]![0]!.GetValue<string>().ShouldBe("10.7.7.7");
    }

    [Fact]
    public async Task Remote_mode_allows_and_denies_through_the_built_in_executor()
    {
        var uri = await CreatePolicy("remote");
        var ev = await Evaluator(uri, EvaluationMode.Remote);
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        ev.ExecutePolicyRule(Ip("10.9.9.9"))["allowed"]!.GetValue<bool>().ShouldBeFalse();
        var overridden = await Evaluator(uri, EvaluationMode.Remote, parameters: new JsonObject { ["local_allowlist"] = new JsonArray("10.3.3.3") });
        overridden.ExecutePolicyRule(Ip("10.3.3.3"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        ev.ExecuteManagementCommand("get_state").ShouldBeOfType<JsonObject>();
    }

    [Fact]
    public async Task Local_and_remote_agree_with_call_parameter_overrides()
    {
        // The sample reads local_allowlist in __init__: an executor makes an instance with a call's parameters, local modes ran
        // the call on the instance made with the evaluator's, so the override allowed remotely and denied locally.
        var uri = await CreatePolicy("overrides");
        foreach (var ev in new[] { await Evaluator(uri), await Evaluator(uri, isolation: LocalIsolation.WorkerProcess), await Evaluator(uri, EvaluationMode.Remote) })
        {
            var label = $"{ev.Mode} {(ev.Mode == EvaluationMode.Local ? _made.IndexOf(ev) : "")}";
            ev.ExecutePolicyRule(Ip("10.3.3.3"), new JsonObject { ["local_allowlist"] = new JsonArray("10.3.3.3") })["allowed"]!.GetValue<bool>().ShouldBeTrue(label);
            ev.ExecutePolicyRule(Ip("10.0.0.1"), new JsonObject { ["local_allowlist"] = new JsonArray("10.3.3.3") })["allowed"]!.GetValue<bool>().ShouldBeFalse(label);
            ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue(label);
        }
    }

    [Fact]
    public async Task An_override_init_refuses_fails_the_call_alike_in_every_mode_and_the_next_call_works()
    {
        // The sample's __init__ refuses an entry that is no IPv4 address; the template (an array of strings) lets it through.
        var uri = await CreatePolicy("badinit");
        foreach (var ev in new[] { await Evaluator(uri), await Evaluator(uri, isolation: LocalIsolation.WorkerProcess), await Evaluator(uri, EvaluationMode.Remote) })
        {
            var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1"), new JsonObject { ["local_allowlist"] = new JsonArray("999.0.0.1") }));
            (e.Status, e.Code).ShouldBe((422, "policy_error"));
            e.Reason.ShouldContain("ValueError: local_allowlist[0]: '999.0.0.1' is not an IPv4 address");
            ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        }
    }

    [Fact]
    public async Task Local_and_remote_refuse_the_same_bad_input()
    {
        var uri = await CreatePolicy("badinput");
        foreach (var ev in new[] { await Evaluator(uri), await Evaluator(uri, EvaluationMode.Remote) })
        {
            var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("not-an-ip")));
            e.Status.ShouldBe(400);
            e.Reason.ShouldContain("input_data.ip");
        }
    }

    [Fact]
    public async Task Local_and_remote_name_a_bad_parameter_override_alike()
    {
        // Local modes named it policy_parameters.local_allowlist, an executor parameters.local_allowlist.
        var uri = await CreatePolicy("badparams");
        foreach (var ev in new[] { await Evaluator(uri), await Evaluator(uri, EvaluationMode.Remote) })
        {
            var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1"), new JsonObject { ["local_allowlist"] = "10.0.0.1" }));
            (e.Status, e.Code).ShouldBe((400, "validation_failed"));
            e.Errors.Select(f => f!["path"]!.GetValue<string>()).ShouldBe(["parameters.local_allowlist"]);
        }
    }

    [Fact]
    public async Task An_update_and_a_retirement_reach_a_local_evaluator()
    {
        var uri = await CreatePolicy("lifecycle");
        var ev = await Evaluator(uri);
        ev.ExecutePolicyRule(Ip("10.8.8.8"))["allowed"]!.GetValue<bool>().ShouldBeFalse();
        await _client.UpdatePolicyAsync(uri, new JsonObject { ["$set"] = new JsonObject { ["policy_parameters.local_allowlist"] = new JsonArray("10.8.8.8") } },
            ct: TestContext.Current.CancellationToken);
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("10.8.8.8"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        await _client.UpdatePolicyAsync(uri, new JsonObject { ["$set"] = new JsonObject { ["status"] = "retired" } }, ct: TestContext.Current.CancellationToken);
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.8.8.8")));
        (e.Status, e.Code).ShouldBe((410, "retired"));
    }

    [Fact]
    public async Task A_deprecated_policy_is_flagged_in_remote_mode_as_in_local_mode()
    {
        // The executor answers a deprecated policy's call with a Deprecation header; remote mode dropped it, so Deprecated
        // stayed false there while a local evaluator of the same policy said true.
        var ct = TestContext.Current.CancellationToken;
        var uri = await CreatePolicy("deprecating");
        var local = await Evaluator(uri);
        var remote = await Evaluator(uri, EvaluationMode.Remote);
        await _client.UpdatePolicyAsync(uri, new JsonObject { ["$set"] = new JsonObject { ["status"] = "deprecated" } }, ct: ct);
        await local.RefreshAsync(ct);

        remote.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue(); // it still runs
        (local.Deprecated, remote.Deprecated).ShouldBe((true, true));

        await _client.UpdatePolicyAsync(uri, new JsonObject { ["$set"] = new JsonObject { ["status"] = "active" } }, ct: ct);
        remote.ExecuteManagementCommand("get_state");
        remote.Deprecated.ShouldBeFalse();
        await _client.UpdatePolicyAsync(uri, new JsonObject { ["$set"] = new JsonObject { ["status"] = "deprecated" } }, ct: ct);
        remote.ExecuteManagementCommand("get_state");
        remote.Deprecated.ShouldBeTrue();
    }

    [Fact]
    public async Task Executor_updates_and_deletes_honour_if_match()
    {
        var ct = TestContext.Current.CancellationToken;
        await _client.CreateExecutorAsync(new JsonObject { ["executor_id"] = "edge-im", ["executor_host_uri"] = "http://10.0.0.7:10000" }, ct);
        var read = await _client.GetExecutorRevisionAsync("edge-im", ct);
        read.ETag.ShouldNotBeNullOrEmpty();
        var set = (string status) => new JsonObject { ["$set"] = new JsonObject { ["executor_status"] = status } };
        await _client.UpdateExecutorAsync("edge-im", set("draining"), read.ETag, ct);

        // The revision read before that update is stale now: neither an update nor a delete goes through.
        var stale = await Should.ThrowAsync<PolicyGridApiException>(() => _client.UpdateExecutorAsync("edge-im", set("unhealthy"), read.ETag, ct));
        (stale.Status, stale.Code).ShouldBe((409, "conflict"));
        (await Should.ThrowAsync<PolicyGridApiException>(() => _client.DeleteExecutorAsync("edge-im", read.ETag, ct))).Code.ShouldBe("conflict");
        (await _client.GetExecutorAsync("edge-im", ct))["executor_status"]!.GetValue<string>().ShouldBe("draining");

        await _client.DeleteExecutorAsync("edge-im", (await _client.GetExecutorRevisionAsync("edge-im", ct)).ETag, ct);
        (await Should.ThrowAsync<PolicyGridApiException>(() => _client.GetExecutorAsync("edge-im", ct))).Status.ShouldBe(404);
    }

    [Fact]
    public async Task Graph_updates_and_deletes_honour_if_match()
    {
        var ct = TestContext.Current.CancellationToken;
        var created = await _client.CreateGraphAsync(new JsonObject
        {
            ["graph_name"] = "g_im", ["graph_version"] = "1.0", ["graph_release_tag"] = "beta",
            ["graph_function_ids"] = new JsonArray("a"), ["graph_connection_data"] = new JsonObject(),
        }, ct);
        var uri = created["graph_uri"]!.GetValue<string>();
        var read = await _client.GetGraphRevisionAsync(uri, ct);
        var describe = (string text) => new JsonObject { ["$set"] = new JsonObject { ["graph_description"] = text } };
        await _client.UpdateGraphAsync(uri, describe("first"), read.ETag, ct);

        var stale = await Should.ThrowAsync<PolicyGridApiException>(() => _client.UpdateGraphAsync(uri, describe("second"), read.ETag, ct));
        (stale.Status, stale.Code).ShouldBe((409, "conflict"));
        (await Should.ThrowAsync<PolicyGridApiException>(() => _client.DeleteGraphAsync(uri, read.ETag, ct))).Code.ShouldBe("conflict");
        (await _client.GetGraphAsync(uri, ct))["graph_description"]!.GetValue<string>().ShouldBe("first");

        await _client.DeleteGraphAsync(uri, (await _client.GetGraphRevisionAsync(uri, ct)).ETag, ct);
        (await Should.ThrowAsync<PolicyGridApiException>(() => _client.GetGraphAsync(uri, ct))).Status.ShouldBe(404);
    }

    [Fact]
    public async Task Calls_written_before_if_match_still_compile_and_write_unconditionally()
    {
        // A token passed by position, as before ifMatch came between: the old overloads take it, and nothing is conditional.
        var ct = TestContext.Current.CancellationToken;
        var created = await _client.CreateGraphAsync(new JsonObject
        {
            ["graph_name"] = "g_old", ["graph_version"] = "1.0", ["graph_release_tag"] = "beta",
            ["graph_function_ids"] = new JsonArray("a"), ["graph_connection_data"] = new JsonObject(),
        }, ct);
        var uri = created["graph_uri"]!.GetValue<string>();
        await _client.UpdateGraphAsync(uri, new JsonObject { ["$set"] = new JsonObject { ["graph_description"] = "x" } }, ct);
        (await _client.GetGraphAsync(uri, ct))["graph_description"]!.GetValue<string>().ShouldBe("x");
        await _client.DeleteGraphAsync(uri, ct);
        (await Should.ThrowAsync<PolicyGridApiException>(() => _client.GetGraphAsync(uri, ct))).Status.ShouldBe(404);
        var policy = await CreatePolicy("oldsig");
        await _client.DeletePolicyAsync(policy, false, ct);
        (await Should.ThrowAsync<PolicyGridApiException>(() => _client.GetPolicyAsync(policy, ct))).Status.ShouldBe(404);
    }

    [Fact]
    public async Task A_policy_delete_honours_if_match()
    {
        var ct = TestContext.Current.CancellationToken;
        var uri = await CreatePolicy("delim");
        var read = await _client.GetPolicyRevisionAsync(uri, ct);
        await _client.UpdatePolicyAsync(uri, new JsonObject { ["$set"] = new JsonObject { ["description"] = "changed" } }, ct: ct);
        (await Should.ThrowAsync<PolicyGridApiException>(() => _client.DeletePolicyAsync(uri, ifMatch: read.ETag, ct: ct))).Code.ShouldBe("conflict");
        await _client.DeletePolicyAsync(uri, ifMatch: (await _client.GetPolicyRevisionAsync(uri, ct)).ETag, ct: ct);
    }

    [Fact]
    public async Task An_unknown_policy_is_not_found()
    {
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Evaluator("nope:1.0-x"));
        (e.Status, e.Code).ShouldBe((404, "not_found"));
    }
}
