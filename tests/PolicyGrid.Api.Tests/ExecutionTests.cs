using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Cli;
using PolicyGrid.Cli.Client;
using PolicyGrid.Core.Ports;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>Onboarding helpers shared by the Type 2 tests: the samples as a user would push them.</summary>
public static class Onboarding
{
    public static async Task<string> UploadAsync(HttpClient client, byte[] zip)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/bundles") { Content = new ByteArrayContent(zip) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        var answer = await client.Exchange(request);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return answer.Data!["code"]!.GetValue<string>();
    }

    /// <summary>Registers samples/policies/&lt;sample&gt; under a unique name; answers its URI.</summary>
    public static async Task<string> SampleAsync(HttpClient client, string sample, string? name = null, Action<JsonObject>? edit = null)
    {
        var dir = Samples.Policy(sample);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "manifest.json")))!.AsObject();
        manifest["name"] = name ?? Unique(sample);
        manifest["code"] = await UploadAsync(client, BundleZipper.Zip(dir));
        edit?.Invoke(manifest);
        var created = await client.Post("/policy", manifest.ToJsonString());
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        return created.Data!["policy_rule_uri"]!.GetValue<string>();
    }

    public static string Execute(string uri, string input, string? extra = null) =>
        $$"""{"policy_rule_uri": "{{uri}}", "input_data": {{input}}{{(extra is null ? "" : ", " + extra)}}}""";
}

/// <summary>Type 2 end to end: the contract's worked example on the built-in executor, over the app's HTTP surface.</summary>
public sealed class ExecutionTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    [Theory]
    [InlineData("\"nul\\u0000key\"", "control characters")]
    [InlineData("LONG", "at most 1024")]
    public async Task A_context_key_with_control_characters_or_over_1024_characters_is_a_400(string key, string rule)
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        if (key == "LONG") key = "\"" + new string('k', 1025) + "\"";
        var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}""", $"\"context_key\": {key}"));
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain("context_key");
        answer.Message!.ShouldContain(rule);
    }

    [Fact]
    public async Task A_context_key_in_the_function_hosts_space_is_a_400_and_the_functions_saved_state_stays_its_own()
    {
        var ct = TestContext.Current.CancellationToken;
        var uri = await Onboarding.SampleAsync(client, "rate_limiter");
        var function = Unique("limiter");
        var deployed = await client.Post("/function/deployments/create/local", $$"""{"name": "{{function}}", "policy_rule_uri": "{{uri}}", "replicas": 1}""");
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        (await client.Post($"/function/call_function/{function}", """{"client_id": "alice"}""")).Status.ShouldBe(200);
        var contexts = server.Service<IContextStore>();
        var saved = (await contexts.GetAsync($"function:{function}#0", ct))!.ToJsonString();

        // Without the check, this call read the replica's {context, state} as its context and saved its own over it.
        var answer = await client.Post("/executor/local/execute_policy",
            Onboarding.Execute(uri, """{"client_id": "alice"}""", $"\"context_key\": \"function:{function}#0\""));

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain("context_key");
        answer.Message!.ShouldContain("'function:'");
        (await contexts.GetAsync($"function:{function}#0", ct))!.ToJsonString().ShouldBe(saved);
    }

    [Fact]
    public async Task A_deleted_policy_takes_its_context_along_and_one_registered_again_under_its_uri_starts_afresh()
    {
        var ct = TestContext.Current.CancellationToken;
        var name = Unique("limiter");
        static void OnePerWindow(JsonObject manifest) => manifest["policy_parameters"] = new JsonObject { ["limit"] = 1, ["window_seconds"] = 3600 };
        var uri = await Onboarding.SampleAsync(client, "rate_limiter", name, OnePerWindow);
        var call = Onboarding.Execute(uri, """{"client_id": "alice"}""");
        (await client.Post("/executor/local/execute_policy", call)).Data!["allowed"]!.GetValue<bool>().ShouldBeTrue();
        (await client.Post("/executor/local/execute_policy", call)).Data!["allowed"]!.GetValue<bool>().ShouldBeFalse();
        // A caller's own context_key is the caller's, not the policy's: it outlives the policy.
        (await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"client_id": "bob"}""", $"\"context_key\": \"{name}-tenant\""))).Status.ShouldBe(200);

        (await client.Delete($"/policy/{uri}")).Status.ShouldBe(200);

        var contexts = server.Service<IContextStore>();
        (await contexts.GetAsync(uri, ct)).ShouldBeNull();
        (await contexts.GetAsync($"{name}-tenant", ct)).ShouldNotBeNull();
        // Registered again (same URI): alice's window of the deleted policy used to carry over, so she stayed refused.
        (await Onboarding.SampleAsync(client, "rate_limiter", name, OnePerWindow)).ShouldBe(uri);
        var again = await client.Post("/executor/local/execute_policy", call);
        again.Status.ShouldBe(200, again.Body?.ToJsonString());
        again.Data!["allowed"]!.GetValue<bool>().ShouldBeTrue();
        again.Data!["count"]!.GetValue<int>().ShouldBe(1);
    }

    private const string CollidingKeysPolicy = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                if input_data.get("mode") == "context":
                    context[1] = "a"
                    context["1"] = "b"
                    return {"ok": True}
                if input_data.get("mode") == "result":
                    return {"n": {True: 1, "true": 2}}
                return {"ok": True, "context": context}
            def management(self, action, data):
                return {None: 1, "null": 2}
        """;

    [Theory]
    [InlineData("result", "Duplicate property 'true'")]
    [InlineData("context", "Duplicate property '1'")]
    public async Task A_policy_answering_a_dict_whose_keys_collide_as_json_is_a_422_and_its_worker_serves_on(string mode, string named)
    {
        var uri = await server.RegisterPolicyAsync(Unique("colliding"), CollidingKeysPolicy);

        // Python writes True and "true" (1 and "1") as one JSON key: the answer carried it twice, and a context holding
        // such keys failed with a 500 when it was read.
        var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, $$"""{"mode": "{{mode}}"}"""));

        answer.Status.ShouldBe(422, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("policy_error");
        answer.Message!.ShouldContain(named);
        answer.Message!.ShouldContain("use string keys");
        var next = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"mode": "plain"}"""));
        next.Status.ShouldBe(200, next.Body?.ToJsonString());
        next.Data!["context"]!.AsObject().Count.ShouldBe(0);
        var management = await client.Post("/executor/local/management", $$"""{"policy_rule_uri": "{{uri}}", "action": "get_state"}""");
        management.Status.ShouldBe(422, management.Body?.ToJsonString());
        management.Message!.ShouldContain("Duplicate property 'null'");
    }

    private const string DeepAnswerPolicy = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                answer = {}
                inner = answer
                for _ in range(int(input_data["levels"])):
                    inner["a"] = {}
                    inner = inner["a"]
                return answer
        """;

    [Fact]
    public async Task A_policy_answering_json_nested_too_deep_is_a_policy_error_and_its_worker_serves_on()
    {
        var uri = await server.RegisterPolicyAsync(Unique("deep"), DeepAnswerPolicy);

        // 260 levels passed the host's encoder but not the server's reader: answered as a broken protocol, worker replaced.
        var deep = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"levels": 260}"""));

        deep.Status.ShouldBe(422, deep.Body?.ToJsonString());
        deep.Code.ShouldBe("policy_error");
        deep.Message!.ShouldContain("nested too deep: an answer carries at most 256 levels");
        var shallow = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"levels": 3}"""));
        shallow.Status.ShouldBe(200, shallow.Body?.ToJsonString());
    }

    private const string LoneSurrogatePolicy = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                if input_data.get("mode") == "key":
                    return {"\udc00": 1}
                if input_data.get("mode") == "value":
                    return {"s": "\ud800"}
                return {"s": input_data.get("text")}
        """;

    [Theory]
    [InlineData("value", "'\\ud800' is a lone surrogate")]
    [InlineData("key", "'\\udc00' is a lone surrogate")]
    public async Task A_policy_answering_text_with_a_lone_surrogate_is_a_422_not_a_fault_blamed_on_the_request(string mode, string named)
    {
        var uri = await server.RegisterPolicyAsync(Unique("surrogate"), LoneSurrogatePolicy);

        // Escaped as ASCII, "\ud800" reached the server as a string no JSON writer can write: a 400 saying the request
        // body was not valid JSON (a value) or a 500 (a key).
        var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, $$"""{"mode": "{{mode}}"}"""));

        answer.Status.ShouldBe(422, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("policy_error");
        answer.Message!.ShouldContain(named);
        var text = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"text": "é ✓ 日本 😀"}"""));
        text.Status.ShouldBe(200, text.Body?.ToJsonString());
        text.Data!["s"]!.GetValue<string>().ShouldBe("é ✓ 日本 😀");
    }

    private const string SecretsEchoPolicy = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.settings = settings
            def eval(self, parameters, input_data, context):
                return {"token": self.settings.get("token"), "api_key": parameters.get("api_key"), "limit": parameters.get("limit")}
        """;

    [Fact]
    public async Task Secrets_passed_back_as_the_mask_a_read_shows_run_with_the_stored_values()
    {
        var name = Unique("secrets");
        var body = new JsonObject
        {
            ["name"] = name, ["version"] = "1.0", ["release_tag"] = "test", ["code"] = await server.StoreBundleAsync(SecretsEchoPolicy),
            ["type"] = "python_class_v1",
            ["policy_settings_schema"] = JsonNode.Parse("""{"token": {"type": "string", "secret": true}}"""),
            ["policy_settings"] = JsonNode.Parse("""{"token": "tok-stored"}"""),
            ["policy_parameters_schema"] = JsonNode.Parse("""{"api_key": {"type": "string", "secret": true, "pattern": "^key-"}, "limit": {"type": "integer"}}"""),
            ["policy_parameters"] = JsonNode.Parse("""{"api_key": "key-stored", "limit": 1}"""),
        };
        (await client.Post("/policy", body.ToJsonString())).Status.ShouldBe(200);
        var read = (await client.Get($"/policy/{name}:1.0-test")).Data!;
        var parameters = read["policy_parameters"]!.AsObject();
        parameters["api_key"]!.GetValue<string>().ShouldBe("***");
        parameters["limit"] = 7;

        // What a read answered, one value changed, passed back as the call's overrides: "***" ran as the token itself,
        // and "***" failed the api_key's pattern with a 400.
        var answer = await client.Post("/executor/local/execute_policy", new JsonObject
        {
            ["policy_rule_uri"] = $"{name}:1.0-test", ["input_data"] = new JsonObject(),
            ["settings"] = read["policy_settings"]!.DeepClone(), ["parameters"] = parameters.DeepClone(),
        }.ToJsonString());

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["token"]!.GetValue<string>().ShouldBe("tok-stored");
        answer.Data!["api_key"]!.GetValue<string>().ShouldBe("key-stored");
        answer.Data!["limit"]!.GetValue<int>().ShouldBe(7);
        var replaced = await client.Post("/executor/local/execute_policy",
            $$$"""{"policy_rule_uri": "{{{name}}}:1.0-test", "input_data": {}, "settings": {"token": "tok-call"}}""");
        replaced.Data!["token"]!.GetValue<string>().ShouldBe("tok-call");
    }

    [Fact]
    public async Task The_worked_example_allows_the_listed_ip_and_denies_another()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var allowed = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""));
        allowed.Status.ShouldBe(200, allowed.Body?.ToJsonString());
        allowed.Data!["allowed"]!.GetValue<bool>().ShouldBeTrue();
        allowed.Data!["reason"]!.GetValue<string>().ShouldBe("allowed");
        allowed.Data!["input_data"]!["ip"]!.GetValue<string>().ShouldBe("10.0.0.1");
        allowed.Header("Deprecation").ShouldBeNull();

        var denied = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"ip": "10.9.9.9"}"""));
        denied.Status.ShouldBe(200);
        denied.Data!["allowed"]!.GetValue<bool>().ShouldBeFalse();
        denied.Data!["reason"]!.GetValue<string>().ShouldBe("denied");
    }

    [Fact]
    public async Task A_policy_cannot_read_the_servers_database_of_every_policys_settings_context_and_decisions()
    {
        // Not root, the workers run as the server's own uid: no file permission can separate them.
        if (Environment.UserName != "root") Assert.Skip("needs root: only then do workers run as users of their own");
        var uri = await server.RegisterPolicyAsync(PolicyDocuments.Unique("snoop"), """
            import os

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    found = {}
                    for path in input_data["paths"]:
                        try:
                            with open(path, "rb") as f:
                                found[path] = "read %d bytes" % len(f.read(64))
                        except OSError as exc:
                            found[path] = type(exc).__name__
                    return found
            """);
        var database = Path.Combine(server.DataDirectory, "policygrid.db");
        File.Exists(database).ShouldBeTrue();
        // A worker with a /tmp of its own sees the host's /tmp read-only under /tmp/.policygrid-host/tmp: tried there too.
        string[] paths = [database, database + "-wal", .. database.StartsWith("/tmp/", StringComparison.Ordinal)
            ? new[] { "/tmp/.policygrid-host" + database, "/tmp/.policygrid-host" + database + "-wal" } : []];
        var input = new JsonObject { ["paths"] = new JsonArray([.. paths.Select(p => (JsonNode)p)]) };
        var answer = await client.Post("/executor/local/execute_policy", new JsonObject { ["policy_rule_uri"] = uri, ["input_data"] = input }.ToJsonString());
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        foreach (var path in paths)
            answer.Data![path]!.GetValue<string>().ShouldBeOneOf(["PermissionError", "FileNotFoundError"], answer.Body?.ToJsonString());
        paths.Select(p => answer.Data![p]!.GetValue<string>()).ShouldContain("PermissionError", answer.Body?.ToJsonString());
    }

    [Fact]
    public async Task Parameters_given_with_the_call_are_merged_over_the_stored_ones()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var answer = await client.Post("/executor/local/execute_policy",
            Onboarding.Execute(uri, """{"ip": "10.9.9.9"}""", "\"parameters\": {\"local_allowlist\": [\"10.9.9.9\"]}"));
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Call_parameters_violating_the_template_are_a_400_naming_the_path()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var answer = await client.Post("/executor/local/execute_policy",
            Onboarding.Execute(uri, """{"ip": "10.0.0.1"}""", "\"parameters\": {\"local_allowlist\": [\"nope\"]}"));
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("local_allowlist[0]");
    }

    [Theory]
    [InlineData("\"10.0.0.1\\n\"")]
    [InlineData("\"\u0661\u0660.\u0660.\u0660.\u0661\"")] // Arabic-Indic digits
    public async Task The_input_schema_pattern_reads_as_json_schema_so_its_anchors_hold(string ip)
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, $$"""{"ip": {{ip}}}"""));
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain(@"input_data.ip: does not match ^\d{1,3}(\.\d{1,3}){3}$");
        answer.Body!["errors"]!.AsArray().Select(e => e!["path"]!.GetValue<string>()).ShouldBe(["input_data.ip"]);
        var plain = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""));
        plain.Status.ShouldBe(200, plain.Body?.ToJsonString());
        plain.Data!["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task A_template_pattern_that_does_not_compile_is_refused_when_the_policy_is_created()
    {
        var name = Unique("bad_pattern");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["policy_input_schema"] = new JsonObject { ["ip"] = new JsonObject { ["type"] = "string", ["pattern"] = @"^(\d+$" } };
        var answer = await client.Post("/policy", body.ToJsonString());
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain(@"policy_input_schema.ip.pattern: '^(\d+$' is not a valid regular expression");
        (await client.Get($"/policy/{PolicyDocuments.Uri(name)}")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task Input_violating_the_input_schema_is_a_400_naming_the_field()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"ip": "not an ip"}"""));
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("input_data.ip");
    }

    [Fact]
    public async Task A_retired_policy_answers_410_and_a_deprecated_one_runs_with_a_deprecation_header()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        (await client.Put($"/policy/{uri}", """{"$set": {"status": "deprecated"}}""")).Status.ShouldBe(200);
        var deprecated = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""));
        deprecated.Status.ShouldBe(200);
        deprecated.Header("Deprecation").ShouldNotBeNull();

        (await client.Put($"/policy/{uri}", """{"$set": {"status": "retired"}}""")).Status.ShouldBe(200);
        var retired = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""));
        retired.Status.ShouldBe(410);
        retired.Code.ShouldBe("retired");
        retired.Message!.ShouldContain(uri);
    }

    [Fact]
    public async Task An_executor_this_server_cannot_run_on_is_refused_at_registration_and_a_stored_one_is_a_502_on_every_call()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var id = Unique("elsewhere");
        var refused = await client.Post("/executor", new JsonObject { ["executor_id"] = id, ["executor_host_uri"] = "inproc://elsewhere" }.ToJsonString());
        refused.Status.ShouldBe(400);
        refused.Message!.ShouldContain("'inproc://elsewhere' names no in-process executor");
        (await client.Get($"/executor/{id}")).Status.ShouldBe(404);

        // One stored by other means (an older server, a hand edit): the second call is answered from the cached
        // executor document, and the refusal must not be cached as a target.
        await server.Services.GetRequiredService<IDocumentStore>().CreateAsync(Collections.Executors, id,
            new JsonObject { ["executor_id"] = id, ["executor_host_uri"] = "inproc://elsewhere", ["executor_status"] = "healthy" }, CancellationToken.None);
        for (var i = 0; i < 2; i++)
        {
            var answer = await client.Post($"/executor/{id}/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""));
            answer.Status.ShouldBe(502, answer.Body?.ToJsonString());
            answer.Message!.ShouldStartWith($"executor '{id}' is registered with a document this server cannot use");
            answer.Message!.ShouldContain("'inproc://elsewhere' names no in-process executor");
        }

        var unknown = await client.Post("/executor/never_registered/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""));
        unknown.Status.ShouldBe(404);
        unknown.Message!.ShouldContain("no executor 'never_registered' is registered");
    }

    [Fact]
    public async Task An_unknown_policy_is_one_404_in_one_wording_on_every_path()
    {
        // It was "policy '…' does not exist" (Type 2 execute and management), "no policy '…' is registered" (GET /policy, jobs)
        // or "policy '…' is not registered; …" (function deploys), so the SDKs and the CLI passed on three sentences.
        const string uri = "never_registered:1.0-beta";
        var answers = new (string Path, Answer Answer)[]
        {
            ("GET /policy", await client.Get($"/policy/{uri}")),
            ("execute_policy", await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, "{}"))),
            ("management", await client.Post("/executor/local/management", $$$"""{"policy_rule_uri": "{{{uri}}}", "action": "get_state", "data": {}}""")),
            ("jobs/submit", await client.Post("/jobs/submit/local", $$$"""{"name": "j", "policy_rule_uri": "{{{uri}}}", "inputs": {}}""")),
            ("function deploy", await client.Post("/function/deployments/create/local", $$"""{"name": "{{Unique("f")}}", "policy_rule_uri": "{{uri}}", "replicas": 1}""")),
        };
        foreach (var (path, answer) in answers)
        {
            (answer.Status, answer.Code).ShouldBe((404, "not_found"), $"{path}: {answer.Body?.ToJsonString()}");
            answer.Message!.ShouldStartWith($"no policy '{uri}' is registered", customMessage: path);
        }
    }

    [Theory]
    [InlineData("ip_allowlist")]
    [InlineData("rate_limiter")]
    public async Task A_samples_get_state_status_is_declared_read_only_so_polling_it_never_enters_a_functions_journal(string sample)
    {
        // The samples did not mark their get_state command read_only: every status poll on a deployed function went into
        // its management journal, for the instances that start later to replay.
        var uri = await Onboarding.SampleAsync(client, sample);
        var function = Unique(sample);
        var deployed = await client.Post("/function/deployments/create/local", $$"""{"name": "{{function}}", "policy_rule_uri": "{{uri}}", "replicas": 1}""");
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());

        for (var i = 0; i < 3; i++)
            (await client.Post($"/function/{function}/management", """{"action": "get_state", "data": {}}""")).Status.ShouldBe(200);

        var journal = await server.Service<IContextStore>().GetAsync($"function:{function}!journal", TestContext.Current.CancellationToken);
        (journal?["head"]?.GetValue<long>() ?? 0).ShouldBe(0, "a get_state poll was journalled");
    }

    [Fact]
    public async Task Management_runs_on_a_fresh_instance()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var answer = await client.Post("/executor/local/management", $$$"""{"policy_rule_uri": "{{{uri}}}", "action": "get_state", "data": {}}""");
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["local_allowlist"]!.AsArray().Single()!.GetValue<string>().ShouldBe("10.0.0.1");
    }

    [Fact]
    public async Task The_node_api_runs_on_this_servers_own_executor()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var answer = await client.Post("/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""));
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["allowed"]!.GetValue<bool>().ShouldBeTrue();
        var manage = await client.Post("/management", $$$"""{"policy_rule_uri": "{{{uri}}}", "action": "get_state", "data": {}}""");
        manage.Status.ShouldBe(200);
    }

    [Fact]
    public async Task Every_execution_is_in_the_decision_log_with_its_caller()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        (await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""))).Status.ShouldBe(200);
        (await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"ip": "bad"}"""))).Status.ShouldBe(400);
        var log = await client.Post("/decisions/query", $$"""{"policy_rule_uri": "{{uri}}"}""");
        log.Status.ShouldBe(200);
        var decisions = log.Data!.AsArray();
        decisions.Count.ShouldBe(2);
        decisions.ShouldAllBe(d => d!["caller"]!.GetValue<string>() == "anonymous");
        decisions.Select(d => d!["outcome"]!.GetValue<string>()).Order().ShouldBe(["error", "result"]);
        var success = decisions.Single(d => d!["outcome"]!.GetValue<string>() == "result")!;
        success["bundle_sha256"]!.GetValue<string>().Length.ShouldBe(64);
        decisions[0]!["outcome"]!.GetValue<string>().ShouldBe("error"); // newest first
        decisions[0]!["error_code"]!.GetValue<string>().ShouldBe("validation_failed");
    }

    [Fact]
    public async Task A_bundle_without_the_policy_class_is_refused_at_create_and_nothing_is_stored()
    {
        var code = await Onboarding.UploadAsync(client, GridServer.Zip(("code/function.py", "class SomethingElse:\n    pass\n")));
        var name = Unique("no_class");
        var answer = await client.Post("/policy", IpAllowlist(name, code).ToJsonString());
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("AIOSv1PolicyRule");
        (await client.Get($"/policy/{PolicyDocuments.Uri(name)}")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task A_policy_whose_init_raises_is_refused_at_create()
    {
        var code = await Onboarding.UploadAsync(client, GridServer.Zip(("code/function.py",
            "class AIOSv1PolicyRule:\n    def __init__(self, rule_id, settings, parameters):\n        raise RuntimeError('needs a database')\n    def eval(self, p, i, c):\n        return {}\n")));
        var name = Unique("init_raises");
        var answer = await client.Post("/policy", IpAllowlist(name, code).ToJsonString());
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("needs a database");
        (await client.Get($"/policy/{PolicyDocuments.Uri(name)}")).Status.ShouldBe(404);
    }
}

/// <summary>The caller recorded in the decision log is the token's name.</summary>
public sealed class ExecutionAuthTests(TokenServer server) : IClassFixture<TokenServer>
{
    [Fact]
    public async Task The_token_name_is_the_recorded_caller()
    {
        var writer = server.ClientWith(TokenServer.Writer);
        var uri = await Onboarding.SampleAsync(writer, "ip_allowlist");
        (await writer.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""))).Status.ShouldBe(200);
        var log = await server.ClientWith(TokenServer.Reader).Post("/decisions/query", $$"""{"policy_rule_uri": "{{uri}}"}""");
        log.Data!.AsArray().Single()!["caller"]!.GetValue<string>().ShouldBe("ci");
    }
}

/// <summary>
/// One server as another's executor over real HTTP on loopback: the registry forwards to the node's
/// POST /execute_policy; a node that goes away makes its executor unhealthy and calls fail fast.
/// </summary>
public sealed class RemoteExecutorTests(GridServer registry) : IClassFixture<GridServer>
{
    [Fact]
    public async Task Calls_are_forwarded_to_a_remote_node_and_a_dead_node_is_marked_unhealthy()
    {
        var data = Directory.CreateTempSubdirectory("pg-node-").FullName;
        var node = PolicyGridApp.Build(["--urls", "http://127.0.0.1:0", "--data", data]);
        await node.StartAsync(TestContext.Current.CancellationToken);
        var nodeAddress = node.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var client = registry.CreateClient();
        try
        {
            // The node runs policies from its own registry, so the policy is onboarded on both.
            using var nodeClient = new HttpClient { BaseAddress = new Uri(nodeAddress) };
            var name = Unique("remote_allowlist");
            var uri = await Onboarding.SampleAsync(nodeClient, "ip_allowlist", name);
            (await Onboarding.SampleAsync(client, "ip_allowlist", name)).ShouldBe(uri);

            var id = Unique("node");
            (await client.Post("/executor", $$"""{"executor_id": "{{id}}", "executor_host_uri": "{{nodeAddress}}"}""")).Status.ShouldBe(200);
            var remote = await client.Post($"/executor/{id}/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""));
            remote.Status.ShouldBe(200, remote.Body?.ToJsonString());
            remote.Data!["allowed"]!.GetValue<bool>().ShouldBeTrue();
            var nodeLog = await nodeClient.Post("/decisions/query", $$"""{"policy_rule_uri": "{{uri}}"}""");
            nodeLog.Data!.AsArray().Count.ShouldBe(1);

            await node.StopAsync(TestContext.Current.CancellationToken);
            var down = await client.Post($"/executor/{id}/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""));
            down.Status.ShouldBe(503);
            down.Code.ShouldBe("backend_unavailable");
            (await client.Get($"/executor/{id}")).Data!["executor_status"]!.GetValue<string>().ShouldBe("unhealthy");
            var fast = await client.Post($"/executor/{id}/execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}"""));
            fast.Status.ShouldBe(503);
            fast.Message!.ShouldContain("marked unhealthy");
            fast.Header("Retry-After").ShouldNotBeNull();
        }
        finally
        {
            await node.DisposeAsync();
            Directory.Delete(data, recursive: true);
        }
    }
}
