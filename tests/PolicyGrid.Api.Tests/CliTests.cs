using System.Text.Json.Nodes;
using PolicyGrid.Cli.Commands;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>The `policygrid` client verbs against the real app over an in-memory HTTP handler.</summary>
public sealed class CliTests(GridServer server) : IClassFixture<GridServer>, IDisposable
{
    private readonly string workDir = Directory.CreateTempSubdirectory("pg-cli-").FullName;

    public void Dispose() => Directory.Delete(workDir, recursive: true);

    private sealed record CliRun(int ExitCode, string Out, string Error)
    {
        public JsonNode Json => JsonNode.Parse(Out)!;
    }

    private async Task<CliRun> Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(output), output, error, uri =>
        {
            var client = server.CreateDefaultClient();
            client.BaseAddress = uri;
            return client;
        });
        var code = await CliApp.RunAsync(args, env);
        return new CliRun(code, output.ToString(), error.ToString());
    }

    private string PolicyDir(string name)
    {
        var dir = Path.Combine(workDir, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "function.py"), GridServer.EchoPolicy);
        Directory.CreateDirectory(Path.Combine(dir, "__pycache__"));
        File.WriteAllText(Path.Combine(dir, "__pycache__", "function.cpython-311.pyc"), "junk");
        var manifest = IpAllowlist(name, "");
        manifest.Remove("code");
        File.WriteAllText(Path.Combine(workDir, $"{name}.json"), manifest.ToJsonString());
        return dir;
    }

    [Fact]
    public async Task Graph_create_warns_on_stderr_of_nodes_with_no_deployed_function_and_keeps_json_output_clean()
    {
        var name = Unique("cli_graph");
        var file = Path.Combine(workDir, $"{name}.json");
        File.WriteAllText(file, new JsonObject
        {
            ["graph_name"] = name,
            ["graph_version"] = "1.0",
            ["graph_release_tag"] = "test",
            ["graph_function_ids"] = new JsonArray($"{name}_a", $"{name}_b"),
            ["graph_connection_data"] = new JsonObject { [$"{name}_a"] = new JsonArray($"{name}_b") },
        }.ToJsonString());

        var created = await Run("graph", "create", file, "--json");

        created.ExitCode.ShouldBe(0, created.Error);
        created.Json["graph_uri"]!.GetValue<string>().ShouldBe($"{name}:1.0-test");
        created.Error.ShouldStartWith("warning: ");
        created.Error.ShouldContain($"'{name}_a', '{name}_b'");
    }

    [Fact]
    public async Task Pushing_new_code_to_a_retired_policy_keeps_it_retired_unless_the_manifest_names_a_status()
    {
        var name = Unique("cli_retired");
        var dir = PolicyDir(name);
        var manifest = Path.Combine(workDir, $"{name}.json");
        var uri = PolicyDocuments.Uri(name);
        (await Run("policy", "push", dir, "--manifest", manifest)).ExitCode.ShouldBe(0);
        var client = server.CreateClient();
        (await client.Send(HttpMethod.Put, $"/policy/{uri}", new JsonObject { ["$set"] = new JsonObject { ["status"] = "retired" } })).Status.ShouldBe(200);

        File.AppendAllText(Path.Combine(dir, "function.py"), "\n# a fix\n");
        var pushed = await Run("policy", "push", dir, "--manifest", manifest, "--json");

        pushed.ExitCode.ShouldBe(0, pushed.Error);
        pushed.Json["status"]!.GetValue<string>().ShouldBe("retired", "a push of new code brought a retired policy back to life");
        (await client.Post("/executor/local/execute_policy", $$$"""{"policy_rule_uri": "{{{uri}}}", "input_data": {"ip": "10.0.0.1"}}""")).Status.ShouldBe(410);

        // Named in the manifest, the status is what the push sets.
        var named = JsonNode.Parse(File.ReadAllText(manifest))!.AsObject();
        named["status"] = "active";
        File.WriteAllText(manifest, named.ToJsonString());
        (await Run("policy", "push", dir, "--manifest", manifest, "--json")).Json["status"]!.GetValue<string>().ShouldBe("active");
    }

    [Fact]
    public async Task Push_creates_then_updates_and_get_query_delete_work_with_readable_and_json_output()
    {
        var name = Unique("cli_policy");
        var dir = PolicyDir(name);
        var manifest = Path.Combine(workDir, $"{name}.json");
        var uri = PolicyDocuments.Uri(name);

        var created = await Run("policy", "push", dir, "--manifest", manifest);
        created.ExitCode.ShouldBe(0, created.Error);
        created.Out.ShouldContain($"created {uri}");

        // Same files give the same bundle: a second push is an update to the same address.
        var again = await Run("policy", "push", dir, "--manifest", manifest, "--json");
        again.ExitCode.ShouldBe(0, again.Error);
        again.Json["policy_rule_uri"]!.GetValue<string>().ShouldBe(uri);
        var code = again.Json["code"]!.GetValue<string>();
        code.ShouldStartWith("bundle://sha256/");
        var bundle = await server.Bundles.GetAsync(code["bundle://sha256/".Length..], TestContext.Current.CancellationToken);
        using (var zip = new System.IO.Compression.ZipArchive(new MemoryStream(bundle!)))
            zip.Entries.Select(e => e.FullName).ShouldBe(["code/function.py"]);

        var get = await Run("policy", "get", uri);
        get.ExitCode.ShouldBe(0);
        get.Out.ShouldContain("policy_rule_uri");
        get.Out.ShouldContain(uri);
        get.Out.ShouldContain("***"); // the secret api_key
        get.Out.Split('\n').ShouldAllBe(line => !line.EndsWith(' ')); // the grid's padding is not written out

        var query = await Run("policy", "query", $$"""{"name": "{{name}}"}""", "--sort", "version:desc");
        query.ExitCode.ShouldBe(0, query.Error);
        query.Out.ShouldContain(uri);
        query.Out.ShouldContain("1 found");

        var deleted = await Run("policy", "delete", uri);
        deleted.ExitCode.ShouldBe(0);
        deleted.Out.ShouldContain($"deleted {uri}");

        var gone = await Run("policy", "get", uri);
        gone.ExitCode.ShouldBe(1);
        gone.Error.ShouldContain("no policy");
        gone.Error.ShouldContain("404 not_found");
    }

    [Fact]
    public async Task Deleting_a_policy_a_function_uses_names_the_clis_force_option_not_the_query_parameter()
    {
        var name = Unique("cli_in_use");
        var uri = PolicyDocuments.Uri(name);
        (await Run("policy", "push", PolicyDir(name), "--manifest", Path.Combine(workDir, $"{name}.json"))).ExitCode.ShouldBe(0);
        var deployed = await Run("function", "deploy", name, "--policy", uri);
        deployed.ExitCode.ShouldBe(0, deployed.Error);

        var refused = await Run("policy", "delete", uri);
        refused.ExitCode.ShouldBe(1);
        refused.Error.ShouldContain("409 conflict");
        refused.Error.ShouldContain($"policygrid policy delete {uri} --force");
        (await Run("policy", "get", uri)).ExitCode.ShouldBe(0);

        var forced = await Run("policy", "delete", uri, "--force");
        forced.ExitCode.ShouldBe(0, forced.Error);
        (await Run("function", "remove", name)).ExitCode.ShouldBe(0);
    }

    [Fact]
    public async Task A_policy_uri_with_a_typo_is_answered_with_the_versions_of_that_name_or_that_no_policy_has_it()
    {
        var name = Unique("cli_typo");
        var uri = PolicyDocuments.Uri(name);
        (await Run("policy", "push", PolicyDir(name), "--manifest", Path.Combine(workDir, $"{name}.json"))).ExitCode.ShouldBe(0);

        var wrongVersion = await Run("policy", "get", $"{name}:9.9-nope");
        wrongVersion.ExitCode.ShouldBe(1);
        wrongVersion.Error.ShouldContain("404 not_found");
        wrongVersion.Error.ShouldContain($"hint: registered versions of '{name}': {uri}");

        var evalWrongVersion = await Run("eval", $"{name}:9.9-nope", "--input", "{}");
        evalWrongVersion.Error.ShouldContain($"hint: registered versions of '{name}': {uri}");
        var localWrongVersion = await Run("eval", $"{name}:9.9-nope", "--input", "{}", "--local");
        localWrongVersion.Error.ShouldContain($"hint: registered versions of '{name}': {uri}");

        var wrongName = await Run("policy", "get", $"{name}x:1.0-test");
        wrongName.Error.ShouldContain($"hint: no policy is named '{name}x'");

        // policy delete and function deploy name a policy too; they said only that the URI was unknown.
        (await Run("policy", "delete", $"{name}:9.9-nope")).Error.ShouldContain($"hint: registered versions of '{name}': {uri}");
        var deployWrongVersion = await Run("function", "deploy", Unique("cli_typo_fn"), "--policy", $"{name}:9.9-nope", "--executor", "local");
        deployWrongVersion.ExitCode.ShouldBe(1);
        deployWrongVersion.Error.ShouldContain($"hint: registered versions of '{name}': {uri}");

        // A 404 about something else (an executor) says nothing of the policy, which is there.
        var wrongExecutor = await Run("eval", uri, "--input", "{}", "--executor", "no_such_executor");
        wrongExecutor.ExitCode.ShouldBe(1);
        wrongExecutor.Error.ShouldNotContain("hint:");
    }

    [Fact]
    public async Task Push_of_a_directory_without_function_py_is_a_usage_error()
    {
        var empty = Directory.CreateDirectory(Path.Combine(workDir, "empty")).FullName;
        var manifest = Path.Combine(workDir, "m.json");
        File.WriteAllText(manifest, IpAllowlist("x", "").ToJsonString());
        var run = await Run("policy", "push", empty, "--manifest", manifest);
        run.ExitCode.ShouldBe(2);
        run.Error.ShouldContain("function.py");
    }

    [Theory]
    [InlineData("push")]
    [InlineData("test")]
    public async Task A_policy_directory_that_does_not_exist_is_named_as_such(string verb)
    {
        // push said "manifest '<dir>/manifest.json' does not exist", test "'<dir>' holds neither function.py nor code/function.py".
        var missing = Path.Combine(workDir, "no-such-policy");
        var run = verb == "test" ? await Run("policy", verb, missing, "--input", "{}") : await Run("policy", verb, missing);
        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldContain($"'{missing}' is not a directory");
        run.Out.ShouldBeEmpty();
    }

    [Fact]
    public async Task Push_of_a_directory_without_manifest_json_says_where_one_was_looked_for_and_how_to_give_another()
    {
        var dir = Directory.CreateDirectory(Path.Combine(workDir, "no-manifest")).FullName;
        File.WriteAllText(Path.Combine(dir, "function.py"), GridServer.EchoPolicy);
        var run = await Run("policy", "push", dir);
        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldContain($"manifest '{Path.Combine(dir, "manifest.json")}' does not exist");
        run.Error.ShouldContain("--manifest");
    }

    [Fact]
    public async Task Push_reports_the_servers_validation_message()
    {
        var name = Unique("cli_bad");
        var dir = PolicyDir(name);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(workDir, $"{name}.json")))!.AsObject();
        manifest["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("not-an-ip") };
        File.WriteAllText(Path.Combine(workDir, $"{name}.json"), manifest.ToJsonString());
        var run = await Run("policy", "push", dir, "--manifest", Path.Combine(workDir, $"{name}.json"));
        run.ExitCode.ShouldBe(1);
        run.Error.ShouldContain("policy_parameters.local_allowlist[0]");
    }

    [Fact]
    public async Task Executor_add_get_query_delete()
    {
        var id = Unique("cli_node");
        var added = await Run("executor", "add", id, "--uri", "http://10.2.0.5:9000", "--label", "zone=eu-1", "--vcpus", "4", "--memory", "8Gi");
        added.ExitCode.ShouldBe(0, added.Error);
        added.Out.ShouldContain($"added executor {id}");

        var get = await Run("executor", "get", id, "--json");
        get.Json["executor_metadata"]!["labels"]!["zone"]!.GetValue<string>().ShouldBe("eu-1");
        get.Json["executor_hardware_info"]!["vcpus"]!["count"]!.GetValue<int>().ShouldBe(4);

        var query = await Run("executor", "query", """{"executor_metadata.labels.zone": "eu-1"}""");
        query.Out.ShouldContain(id);

        (await Run("executor", "delete", id)).ExitCode.ShouldBe(0);
        (await Run("executor", "get", id)).ExitCode.ShouldBe(1);
    }

    [Theory]
    [InlineData("{'ip': '10.0.0.1'}")] // Python's quotes
    [InlineData("{ip: 10.0.0.1}")]     // the shell ate the double quotes: --input "{"ip": "10.0.0.1"}"
    public async Task Input_quoted_wrongly_is_a_usage_error_that_shows_how_to_quote_json_on_a_command_line(string input)
    {
        var run = await Run("eval", "ip_allowlist:1.0-beta", "--input", input);
        run.ExitCode.ShouldBe(2);
        run.Error.ShouldContain("--input is not valid JSON");
        run.Error.ShouldContain("double quotes");
        run.Error.ShouldContain("""--input '{"key": "value"}'""");
    }

    [Fact]
    public async Task Eval_runs_the_worked_example_on_an_executor_and_reports_policy_errors()
    {
        var client = server.CreateClient();
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");

        var allowed = await Run("eval", uri, "--input", """{"ip": "10.0.0.1"}""", "--json");
        allowed.ExitCode.ShouldBe(0, allowed.Error);
        allowed.Json["allowed"]!.GetValue<bool>().ShouldBeTrue();

        var denied = await Run("eval", uri, "--input", """{"ip": "10.9.9.9"}""", "--executor", "local");
        denied.ExitCode.ShouldBe(0, denied.Error);
        denied.Out.ShouldContain("\"allowed\": false");

        var bad = await Run("eval", uri, "--input", """{"ip": "nope"}""");
        bad.ExitCode.ShouldBe(1);
        bad.Error.ShouldContain("input_data.ip");

        var notJson = await Run("eval", uri, "--input", "{ip}");
        notJson.ExitCode.ShouldBe(2);
        notJson.Error.ShouldContain("--input");

        var both = await Run("eval", uri, "--input", "{}", "--executor", "local", "--local");
        both.ExitCode.ShouldBe(2);
    }

    [Fact]
    public async Task Eval_local_fetches_the_policy_and_runs_it_on_this_machine()
    {
        var client = server.CreateClient();
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var before = (await client.Post("/decisions/query", $$"""{"policy_rule_uri": "{{uri}}"}""")).Data!.AsArray().Count;

        var allowed = await Run("eval", uri, "--input", """{"ip": "10.0.0.1"}""", "--local", "--json");
        allowed.ExitCode.ShouldBe(0, allowed.Error);
        allowed.Json["allowed"]!.GetValue<bool>().ShouldBeTrue();
        var overridden = await Run("eval", uri, "--input", """{"ip": "10.9.9.9"}""", "--local", "--parameters", """{"local_allowlist": ["10.9.9.9"]}""", "--json");
        overridden.ExitCode.ShouldBe(0, overridden.Error);
        overridden.Json["allowed"]!.GetValue<bool>().ShouldBeTrue();

        // It ran here, not on an executor: the server recorded no decision.
        (await client.Post("/decisions/query", $$"""{"policy_rule_uri": "{{uri}}"}""")).Data!.AsArray().Count.ShouldBe(before);
    }

    [Fact]
    public async Task Eval_local_without_timeout_gives_the_policy_its_own_deadline_as_eval_on_an_executor_does()
    {
        // --local ran every policy with a fixed 10 s deadline: one declaring resource_estimates.timeout_seconds 0.5 answered
        // 504 from `eval` and ran on under `eval --local`.
        const string Naps = """
            import time
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    time.sleep(input_data.get("sleep", 0))
                    return {"slept": True}
            """;
        var name = PolicyDocuments.Unique("naps");
        var created = await server.CreateClient().Send(HttpMethod.Post, "/policy", new JsonObject
        {
            ["name"] = name, ["version"] = "1.0", ["release_tag"] = "test", ["code"] = await server.StoreBundleAsync(Naps),
            ["type"] = "python_class_v1", ["resource_estimates"] = new JsonObject { ["timeout_seconds"] = 0.5 },
        });
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        var uri = $"{name}:1.0-test";

        var remote = await Run("eval", uri, "--input", """{"sleep": 1.5}""");
        var local = await Run("eval", uri, "--input", """{"sleep": 1.5}""", "--local");
        remote.Error.ShouldContain("policy_timeout");
        local.Error.ShouldContain("policy_timeout");
        local.ExitCode.ShouldBe(remote.ExitCode);

        // --timeout wins over the policy's, in both.
        var given = await Run("eval", uri, "--input", """{"sleep": 1}""", "--local", "--timeout", "20", "--json");
        given.ExitCode.ShouldBe(0, given.Error);
    }

    [Theory]
    [InlineData("frobnicate")]
    [InlineData("policy", "frob")]
    [InlineData("policy", "get", "a:1.0-b", "--bogus")]
    [InlineData("eval", "a:1.0-b", "--json")]
    [InlineData("eval")]
    public async Task An_unknown_verb_or_option_or_a_missing_argument_is_a_usage_error_told_on_stderr(params string[] args)
    {
        var run = await Run(args);
        run.ExitCode.ShouldBe(2, run.Error);
        run.Out.ShouldBeEmpty();
        run.Error.ShouldStartWith("error: ");
        run.Error.ShouldContain("--help'");
    }

    [Fact]
    public async Task Help_still_exits_0()
    {
        var run = await Run("eval", "--help");
        run.ExitCode.ShouldBe(0, run.Error);
        run.Out.ShouldContain("--input");
    }

    [Fact]
    public async Task Help_lists_the_exit_codes_a_script_can_test()
    {
        // Documented only in docs/api.md, and job wait's 4 nowhere.
        var run = await Run("--help");
        run.ExitCode.ShouldBe(0, run.Error);
        run.Out.ShouldContain("Exit codes: 0 done; 1 the server refused, or the policy or job failed");
        run.Out.ShouldContain("4 `job wait --timeout` gave up while the job still runs");
    }

    [Fact]
    public async Task A_filter_that_is_not_json_is_a_usage_error()
    {
        var run = await Run("policy", "query", "{name: oops}");
        run.ExitCode.ShouldBe(2);
        run.Error.ShouldContain("filter is not valid JSON");
    }

    [Fact]
    public async Task An_unreachable_server_is_exit_code_3_with_a_hint()
    {
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(new StringWriter()), new StringWriter(), error,
            uri => new HttpClient { BaseAddress = uri, Timeout = TimeSpan.FromSeconds(5) });
        var code = await CliApp.RunAsync(["executor", "get", "local", "--server", "http://127.0.0.1:9"], env);
        code.ShouldBe(3);
        error.ToString().ShouldContain("cannot reach the server");
        error.ToString().ShouldContain("is `policygrid serve` running?");
    }

    [Fact]
    public async Task Eval_local_against_an_unreachable_server_is_exit_code_3_with_the_same_hint()
    {
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(new StringWriter()), new StringWriter(), error,
            uri => new HttpClient { BaseAddress = uri, Timeout = TimeSpan.FromSeconds(5) });
        var code = await CliApp.RunAsync(["eval", "ip_allowlist:1.0-beta", "--input", "{}", "--local", "--server", "http://127.0.0.1:9"], env);
        code.ShouldBe(3);
        error.ToString().ShouldContain("cannot reach the server at http://127.0.0.1:9/");
        error.ToString().ShouldContain("is `policygrid serve` running? use --server to point elsewhere");
    }

    [Theory]
    [InlineData("executor", "get", "local")]
    [InlineData("graph", "diagram", "admission:1.0-beta")] // not an envelope: read apart from the JSON verbs
    public async Task A_server_that_accepts_and_never_answers_is_exit_code_3_after_the_http_timeout(string area, string verb, string what)
    {
        using var silent = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        silent.Start(); // connections wait in its backlog: accepted by the kernel, never answered
        var port = ((System.Net.IPEndPoint)silent.LocalEndpoint).Port;
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(new StringWriter()), new StringWriter(), error,
            uri => new HttpClient { BaseAddress = uri, Timeout = TimeSpan.FromMinutes(10) });
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var code = await CliApp.RunAsync([area, verb, what, "--server", $"http://127.0.0.1:{port}", "--http-timeout", "1"], env);

        code.ShouldBe(3, error.ToString());
        error.ToString().ShouldContain($"did not answer within 1 s (--http-timeout)");
        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task Eval_local_against_a_server_that_never_answers_gives_up_after_the_http_timeout()
    {
        // --local fetched through the SDK with a fixed 30 s timeout, whatever --http-timeout said.
        using var silent = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        silent.Start();
        var port = ((System.Net.IPEndPoint)silent.LocalEndpoint).Port;
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(new StringWriter()), new StringWriter(), error,
            uri => new HttpClient { BaseAddress = uri, Timeout = TimeSpan.FromMinutes(10) });
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var code = await CliApp.RunAsync(["eval", "ip_allowlist:1.0-beta", "--input", "{}", "--local", "--server", $"http://127.0.0.1:{port}", "--http-timeout", "1"], env);

        code.ShouldBe(3, error.ToString());
        error.ToString().ShouldContain("no answer within 1 s");
        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(25));
    }

    [Theory]
    [InlineData("NaN", "eval", "ip_allowlist:1.0-beta", "--input", "{}")]
    [InlineData("Infinity", "eval", "ip_allowlist:1.0-beta", "--input", "{}")]
    [InlineData("1e12", "eval", "ip_allowlist:1.0-beta", "--input", "{}", "--local")]
    [InlineData("NaN", "job", "submit", "ip_allowlist:1.0-beta", "--inputs", "{}")]
    [InlineData("-1", "job", "wait", "some-job")]
    [InlineData("NaN", "policy", "test", ".", "--input", "{}")]
    public async Task A_timeout_that_is_no_usable_number_of_seconds_is_a_usage_error_not_a_stack_trace(string value, params string[] verb)
    {
        // NaN and Infinity crashed the JSON writer or TimeSpan, 1e12 TimeSpan, each with an unhandled exception's stack trace.
        var dir = PolicyDir("timeouts");
        var args = verb.Select(a => a == "." ? dir : a).Append("--timeout").Append(value).ToArray();
        var run = await Run(args);
        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldContain($"--timeout must be a number of seconds");
        run.Error.ShouldContain($"not {double.Parse(value, System.Globalization.CultureInfo.InvariantCulture).ToString(System.Globalization.CultureInfo.InvariantCulture)}");
        run.Out.ShouldBeEmpty();
    }

    [Theory]
    [InlineData("eval", "ip_allowlist:1.0-beta", "--input", "{\"ip\": \"\\ud800\"}")]
    [InlineData("eval", "ip_allowlist:1.0-beta", "--input", "{\"ip\": \"10.0.0.1\"}", "--parameters", "{\"\\udc00\": 1}")]
    [InlineData("policy", "query", "{\"name\": \"\\ud800\"}")]
    public async Task Json_holding_an_escaped_lone_surrogate_is_a_usage_error_not_a_stack_trace(params string[] args)
    {
        // Valid JSON syntax, but no text: writing it for the server threw InvalidOperationException's stack trace.
        var run = await Run(args);
        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldContain("holds an escaped lone surrogate");
        run.Error.ShouldNotContain("   at ");
    }

    [Fact]
    public async Task An_http_timeout_past_what_a_timer_takes_is_a_usage_error()
    {
        var run = await Run("executor", "get", "local", "--http-timeout", "1e8"); // CancelAfter threw, with a stack trace
        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldContain("--http-timeout must be a number of seconds greater than 0 and at most 2147483.647, not 100000000");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-5")]
    [InlineData("NaN")]
    public async Task An_http_timeout_that_is_not_a_positive_number_of_seconds_is_a_usage_error(string value)
    {
        var run = await Run("executor", "get", "local", "--http-timeout", value);
        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldContain("--http-timeout must be a number of seconds greater than 0");
    }

    [Fact]
    public async Task A_graph_uri_holding_a_path_reaches_no_other_resource()
    {
        // graph delete and diagram put the URI in the path unescaped: "../policy/<uri>" deleted that policy.
        var name = Unique("cli_graph_path");
        var dir = PolicyDir(name);
        var uri = PolicyDocuments.Uri(name);
        (await Run("policy", "push", dir, "--manifest", Path.Combine(workDir, $"{name}.json"))).ExitCode.ShouldBe(0);

        var deleted = await Run("graph", "delete", $"../policy/{uri}");
        var drawn = await Run("graph", "diagram", $"../policy/{uri}");

        deleted.ExitCode.ShouldBe(1, deleted.Out);
        deleted.Error.ShouldContain("no graph '../policy/");
        drawn.ExitCode.ShouldBe(1, drawn.Out);
        drawn.Error.ShouldStartWith($"error: no graph '../policy/{uri}' is registered");
        drawn.Error.ShouldContain("(404 not_found)");
        (await server.CreateClient().GetAsync($"/policy/{uri}", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(System.Net.HttpStatusCode.OK);
    }

    [Fact]
    public async Task A_json_value_given_as_at_file_is_read_from_that_file()
    {
        // The parser's response files took "@in.json" for command-line words and split the JSON at its spaces.
        var client = server.CreateClient();
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var input = Path.Combine(workDir, "input.json");
        File.WriteAllText(input, "{\n  \"ip\": \"10.0.0.1\"\n}\n");
        var filter = Path.Combine(workDir, "filter.json");
        File.WriteAllText(filter, $$"""{ "policy_rule_uri": "{{uri}}" }""");

        var evaluated = await Run("eval", uri, "--input", $"@{input}", "--json");
        var found = await Run("policy", "query", $"@{filter}", "--json");

        evaluated.ExitCode.ShouldBe(0, evaluated.Error);
        evaluated.Json["allowed"]!.GetValue<bool>().ShouldBeTrue();
        found.ExitCode.ShouldBe(0, found.Error);
        found.Json.AsArray().Single()!["policy_rule_uri"]!.GetValue<string>().ShouldBe(uri);
    }

    [Theory]
    [InlineData("missing.json", "--input file '{0}' does not exist")]
    [InlineData("", "--input file '{0}' is a directory; give the JSON file in it")]
    [InlineData("broken.json", "--input file '{0}' is not valid JSON")]
    public async Task An_at_file_that_cannot_be_read_as_json_is_a_usage_error_naming_it(string file, string message)
    {
        var path = Path.Combine(workDir, file);
        File.WriteAllText(Path.Combine(workDir, "broken.json"), "{'ip': 1}");
        var run = await Run("eval", "ip_allowlist:1.0-beta", "--input", $"@{path}");
        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldStartWith("error: " + string.Format(System.Globalization.CultureInfo.InvariantCulture, message, path));
    }

    [Theory]
    [InlineData("graph", "create", "{0}")]
    [InlineData("job", "submit", "ip_allowlist:1.0-beta", "--inputs-file", "{0}")]
    [InlineData("policy", "push", "{1}", "--manifest", "{0}")]
    public async Task A_directory_given_for_a_json_file_is_named_as_a_directory(params string[] args)
    {
        // It was "'<dir>' does not exist", which sends the user looking for a typo.
        var policy = PolicyDir(Unique("cli_dir_for_file"));
        var run = await Run([.. args.Select(a => string.Format(System.Globalization.CultureInfo.InvariantCulture, a, workDir, policy))]);
        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldContain($"'{workDir}' is a directory; give the JSON file in it");
    }

    [Theory]
    [InlineData("error: unknown option '--lmit'; did you mean '--limit'?", "policy", "query", "--lmit", "3")]
    [InlineData("error: unknown option '--lmit'; did you mean '--limit'?", "policy", "query", "--lmit=3")]
    [InlineData("error: unknown option '--jsn'; did you mean '--json'?", "policy", "get", "--jsn")]
    [InlineData("error: unknown option '--sever'; did you mean '--server'?", "executor", "get", "local", "--sever", "http://127.0.0.1:9")]
    [InlineData("error: --limit takes a whole number, not 'ten'", "policy", "query", "--limit", "ten")]
    [InlineData("error: --timeout takes a number, not '2s'", "eval", "a:1.0-b", "--input", "{}", "--timeout", "2s")]
    [InlineData("error: missing <action>: The management action", "function", "manage", "f")]
    [InlineData("error: unknown command 'frob'; 'policygrid policy' has: push, get, query, delete, test", "policy", "frob")]
    [InlineData("error: 'policygrid job' needs a command: submit, get, wait, query, cancel", "job")]
    public async Task A_usage_mistake_is_told_in_the_words_of_the_verbs_options(string message, params string[] args)
    {
        // The parser took a misspelt option for the argument ("--jsn" became the policy URI asked for), named .NET types
        // ("System.Nullable`1[System.Int32]") and the command where an argument was missing.
        var run = await Run(args);
        run.ExitCode.ShouldBe(2, run.Error);
        run.Out.ShouldBeEmpty();
        run.Error.Split('\n')[0].TrimEnd().ShouldBe(message);
        run.Error.ShouldNotContain("System.");
    }

    [Fact]
    public async Task After_a_double_dash_a_word_starting_with_a_dash_is_an_argument()
    {
        var run = await Run("executor", "get", "--", "-edge");
        run.ExitCode.ShouldBe(1, run.Error);
        run.Error.ShouldContain("'-edge'");
    }

    /// <summary>Answers every request with what <paramref name="answer"/> makes (or throws), as a proxy or a broken server would.</summary>
    private sealed class CannedAnswers(Func<HttpResponseMessage> answer) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) => Task.FromResult(answer());
    }

    private static async Task<CliRun> RunAgainst(Func<HttpResponseMessage> answer, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(output), output, error, uri => new HttpClient(new CannedAnswers(answer)) { BaseAddress = uri });
        var code = await CliApp.RunAsync(args, env);
        return new CliRun(code, output.ToString(), error.ToString());
    }

    [Theory]
    [InlineData("policy", "get", "a:1.0-b")]
    [InlineData("eval", "a:1.0-b", "--input", "{}", "--local")]
    public async Task A_429_or_503_that_says_when_to_retry_is_told_with_that_wait(params string[] args)
    {
        var run = await RunAgainst(() => new HttpResponseMessage(System.Net.HttpStatusCode.TooManyRequests)
        {
            Content = new StringContent("""{"success": false, "message": "the queue is full", "code": "overloaded"}""", System.Text.Encoding.UTF8, "application/json"),
            Headers = { RetryAfter = new System.Net.Http.Headers.RetryConditionHeaderValue(TimeSpan.FromSeconds(7)) },
        }, args);

        run.ExitCode.ShouldBe(1, run.Error);
        run.Error.ShouldContain("error: the queue is full (429 overloaded)");
        run.Error.ShouldContain("hint: the server asks to try again in 7 s");
    }

    [Theory]
    [InlineData("policy", "get", "a:1.0-b")]
    [InlineData("eval", "a:1.0-b", "--input", "{}", "--local")]
    public async Task A_proxys_error_page_is_told_on_one_line(params string[] args)
    {
        var run = await RunAgainst(() => new HttpResponseMessage(System.Net.HttpStatusCode.ServiceUnavailable)
        {
            Content = new StringContent("<html>\n<body>\n<h1>503 Service Unavailable</h1>\n</body>\n</html>\n", System.Text.Encoding.UTF8, "text/html"),
        }, args);

        run.ExitCode.ShouldBe(1, run.Error);
        var lines = run.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error: ", StringComparison.Ordinal) || !l.StartsWith("warning: ", StringComparison.Ordinal)).ToList();
        lines.Count.ShouldBe(1, run.Error);
        lines[0].ShouldContain("<html> <body> <h1>503 Service Unavailable</h1> </body> </html>");
    }

    [Fact]
    public async Task An_empty_error_answer_says_it_was_empty()
    {
        var run = await RunAgainst(() => new HttpResponseMessage(System.Net.HttpStatusCode.BadGateway), "policy", "get", "a:1.0-b");
        run.ExitCode.ShouldBe(1, run.Error);
        run.Error.ShouldStartWith("error: the server answered 502 without a PolicyGrid envelope: (an empty body)");
    }

    [Theory]
    [InlineData("policy", "get", "a:1.0-b")]
    [InlineData("eval", "a:1.0-b", "--input", "{}", "--local")]
    public async Task Https_to_a_server_that_speaks_plain_http_says_so_instead_of_see_inner_exception(params string[] args)
    {
        var run = await RunAgainst(() => throw new HttpRequestException("The SSL connection could not be established, see inner exception.",
            new System.Security.Authentication.AuthenticationException("Cannot determine the frame size or a corrupted frame was received.")),
            [.. args, "--server", "https://127.0.0.1:18473"]);

        run.ExitCode.ShouldBe(3, run.Error);
        run.Error.ShouldContain("error: cannot reach the server at https://127.0.0.1:18473/: the TLS handshake failed (Cannot determine the frame size or a corrupted frame was received.)");
        run.Error.ShouldContain("if the server speaks plain HTTP, use --server http://127.0.0.1:18473");
        run.Error.ShouldNotContain("see inner exception");
    }

    [Fact]
    public async Task A_server_address_without_its_scheme_is_answered_with_the_url_it_means()
    {
        var run = await Run("executor", "get", "local", "--server", "127.0.0.1:18473");
        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldStartWith("error: --server '127.0.0.1:18473' is not an http(s) URL; give the scheme too: http://127.0.0.1:18473");
    }
}
