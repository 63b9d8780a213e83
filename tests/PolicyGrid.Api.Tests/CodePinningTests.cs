using System.Security.Cryptography;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// A policy whose code is an unpinned URL runs the code the registry dry-loaded (<c>code_sha256</c>), in every
/// process, until an update loads and records new code: a URL that starts serving other bytes is refused.
/// </summary>
public sealed class CodePinningTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly LoopbackBundleServer _bundles = new();
    // Each test has its own bundle cache, so clearing it is a fresh process view of this test's bundles only.
    private readonly string _cache = Path.Combine("/var/tmp", "pg-pin-tests-" + Guid.NewGuid().ToString("N")[..12]);
    private readonly byte[] _a = GridServer.Zip(Answering("A"));
    private readonly byte[] _b = GridServer.Zip(Answering("B"));

    public void Dispose()
    {
        _bundles.Dispose();
        if (Directory.Exists(_cache)) Directory.Delete(_cache, recursive: true);
    }

    private static string Answering(string which) => $$"""
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                return {"code": "{{which}}"}
        """;

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private string Url => _bundles.Url("/policy.zip");

    private GridServer Server() => new()
    {
        PythonWorkers = 1,
        Settings = new()
        {
            ["PolicyGrid:Runtime:Bundles:AllowLoopback"] = "true",
            ["PolicyGrid:Runtime:Bundles:CacheDirectory"] = _cache,
        },
    };

    private JsonObject Policy(string name) => new()
    {
        ["name"] = name,
        ["version"] = "1.0",
        ["release_tag"] = "beta",
        ["code"] = Url,
        ["type"] = "python_class_v1",
    };

    private static Task<Answer> Execute(HttpClient client, string uri) =>
        client.Post("/executor/local/execute_policy", new JsonObject { ["policy_rule_uri"] = uri, ["input_data"] = new JsonObject() }.ToJsonString());

    [Fact]
    public async Task An_unpinned_url_runs_only_the_code_the_registry_dry_loaded_until_an_update_loads_new_code()
    {
        _bundles.Serve("/policy.zip", _a);
        var name = Unique("pinned");
        var uri = PolicyDocuments.Uri(name);
        var server = Server();
        try
        {
            var client = server.CreateClient();
            var created = await client.Post("/policy", Policy(name).ToJsonString());
            created.Status.ShouldBe(200, created.Body?.ToJsonString());
            created.Data!["code"]!.GetValue<string>().ShouldBe(Url); // what the user wrote, untouched
            created.Data!["code_sha256"]!.GetValue<string>().ShouldBe(Sha256(_a));
            (await Execute(client, uri)).Data!["code"]!.GetValue<string>().ShouldBe("A");

            // The URL now serves other code. A fresh process (the server restarted with its bundle cache gone,
            // like another replica) must not run it under the revision that recorded A.
            _bundles.Serve("/policy.zip", _b);
            await server.ExitAsync();
            Directory.Delete(_cache, recursive: true);
            server = server.Restart();
            client = server.CreateClient();
            var refused = await Execute(client, uri);
            refused.Status.ShouldBe(502, refused.Body?.ToJsonString());
            refused.Code.ShouldBe("backend_error");
            refused.Message.ShouldContain(Url);
            refused.Message.ShouldContain($"has sha256 {Sha256(_b)}, not the expected {Sha256(_a)}");
            // A stateful function (Type 4) fetches through the same check: its deployment is refused the same way.
            var deployed = await client.Post("/function/deployments/create/local", new JsonObject { ["name"] = Unique("pinned-fn"), ["policy_rule_uri"] = uri }.ToJsonString());
            deployed.Status.ShouldBe(502, deployed.Body?.ToJsonString());
            deployed.Message.ShouldContain($"has sha256 {Sha256(_b)}, not the expected {Sha256(_a)}");

            // An update that loads the code again (here a full replacement naming no hash) records B, and B runs.
            var updated = await client.Put($"/policy/{uri}", Policy(name).ToJsonString());
            updated.Status.ShouldBe(200, updated.Body?.ToJsonString());
            updated.Data!["code_sha256"]!.GetValue<string>().ShouldBe(Sha256(_b));
            (await Execute(client, uri)).Data!["code"]!.GetValue<string>().ShouldBe("B");
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_caller_supplied_code_sha256_that_is_not_what_the_url_serves_is_a_400_and_nothing_is_stored()
    {
        _bundles.Serve("/policy.zip", _a);
        await using var server = Server();
        var client = server.CreateClient();
        var name = Unique("wrong_pin");
        var body = Policy(name);
        body["code_sha256"] = Sha256(_b);

        var answer = await client.Post("/policy", body.ToJsonString());

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message.ShouldContain("code_sha256");
        answer.Message.ShouldContain(Sha256(_a));
        answer.Message.ShouldContain(Sha256(_b));
        (await client.Get($"/policy/{PolicyDocuments.Uri(name)}")).Status.ShouldBe(404);

        body["code_sha256"] = Sha256(_a).ToUpperInvariant(); // the right hash, in any case, is accepted and stored lowercase
        var created = await client.Post("/policy", body.ToJsonString());
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        created.Data!["code_sha256"]!.GetValue<string>().ShouldBe(Sha256(_a));
    }

    [Fact]
    public async Task An_update_that_keeps_the_recorded_hash_refuses_new_bytes_and_one_that_names_them_records_them()
    {
        _bundles.Serve("/policy.zip", _a);
        await using var server = Server();
        var client = server.CreateClient();
        var name = Unique("kept_pin");
        var uri = PolicyDocuments.Uri(name);
        (await client.Post("/policy", Policy(name).ToJsonString())).Status.ShouldBe(200);
        _bundles.Serve("/policy.zip", _b);

        // Changing parameters loads the policy again; the document still names A, so B is not taken silently.
        var kept = await client.Put($"/policy/{uri}", """{"$set": {"policy_parameters": {"x": 1}}}""");
        kept.Status.ShouldBe(400, kept.Body?.ToJsonString());
        kept.Message.ShouldContain($"has sha256 {Sha256(_b)}, not the expected {Sha256(_a)}");
        (await client.Get($"/policy/{uri}")).Data!["code_sha256"]!.GetValue<string>().ShouldBe(Sha256(_a));

        var named = await client.Put($"/policy/{uri}", new JsonObject { ["$set"] = new JsonObject { ["code_sha256"] = Sha256(_b) } }.ToJsonString());
        named.Status.ShouldBe(200, named.Body?.ToJsonString());
        named.Data!["code_sha256"]!.GetValue<string>().ShouldBe(Sha256(_b));
        (await Execute(client, uri)).Data!["code"]!.GetValue<string>().ShouldBe("B");
    }

    [Fact]
    public async Task A_content_addressed_code_records_its_own_hash_and_a_document_stored_without_one_still_runs()
    {
        await using var server = Server();
        var client = server.CreateClient();
        var stored = await server.Bundles.PutAsync(_a, Ct);
        var name = Unique("addressed");
        var body = Policy(name);
        body["code"] = stored.Code;
        var created = await client.Post("/policy", body.ToJsonString());
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        created.Data!["code_sha256"]!.GetValue<string>().ShouldBe(stored.Sha256);

        // As an older version stored it: no code_sha256 at all, an unpinned URL fetched as before.
        _bundles.Serve("/policy.zip", _b);
        var old = Policy(Unique("older"));
        old["policy_rule_uri"] = PolicyDocuments.Uri(old["name"]!.GetValue<string>());
        await server.Store.CreateAsync(Collections.Policies, old["policy_rule_uri"]!.GetValue<string>(), old, Ct);
        var ran = await Execute(client, old["policy_rule_uri"]!.GetValue<string>());
        ran.Status.ShouldBe(200, ran.Body?.ToJsonString());
        ran.Data!["code"]!.GetValue<string>().ShouldBe("B");
        (await client.Get($"/policy/{old["policy_rule_uri"]}")).Data!["code_sha256"]!.GetValue<string>().ShouldBe("");
    }
}
