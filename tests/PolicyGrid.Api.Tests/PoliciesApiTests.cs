using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

public sealed class PoliciesApiTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    private async Task<(string Name, string Uri, Answer Created)> CreateAsync(string stem = "ip_allowlist", Action<JsonObject>? edit = null)
    {
        var name = Unique(stem);
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        edit?.Invoke(body);
        var created = await client.Post("/policy", body.ToJsonString());
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        return (name, PolicyDocuments.Uri(name), created);
    }

    private async Task ShouldNotBeStored(string name)
    {
        var found = await server.Store.QueryAsync(Collections.Policies, DocumentQuery.All(), TestContext.Current.CancellationToken);
        found.ShouldNotContain(d => d.Body["name"]!.GetValue<string>() == name);
    }

    private async Task<Answer> CreateBad(JsonObject body)
    {
        var answer = await client.Post("/policy", body.ToJsonString());
        answer.Success.ShouldBe(false);
        return answer;
    }

    [Fact]
    public async Task Two_management_commands_of_one_name_are_a_400_on_create_and_update_and_nothing_is_stored()
    {
        var name = Unique("commands");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["management_commands_schema"] = JsonNode.Parse("""[{"name": "reset"}, {"name": "reset", "schema": {"n": {"type": "integer", "required": true}}}]""");

        var created = await client.Post("/policy", body.ToJsonString());

        created.Status.ShouldBe(400, created.Body?.ToJsonString());
        created.Message.ShouldStartWith("management_commands_schema[1].name: 'reset' is already the name of management_commands_schema[0]");
        (await client.Get($"/policy/{Uri(name)}")).Status.ShouldBe(404);

        body["management_commands_schema"] = JsonNode.Parse("""[{"name": "reset"}]""");
        (await client.Post("/policy", body.ToJsonString())).Status.ShouldBe(200);
        var pushed = await client.Put($"/policy/{Uri(name)}", """{"$push": {"management_commands_schema": {"name": "reset"}}}""");
        pushed.Status.ShouldBe(400, pushed.Body?.ToJsonString());
        (await client.Get($"/policy/{Uri(name)}")).Data!["management_commands_schema"]!.AsArray().Count.ShouldBe(1);
    }

    [Fact]
    public async Task A_policy_stored_with_two_commands_of_one_name_still_runs_and_can_be_retired()
    {
        var uri = await server.StorePolicyAsync(Unique("stored_commands"), GridServer.EchoPolicy,
            new JsonObject { ["management_commands_schema"] = JsonNode.Parse("""[{"name": "a"}, {"name": "a"}]""") });

        (await client.Post("/executor/local/execute_policy", $$$"""{"policy_rule_uri": "{{{uri}}}", "input_data": {}}""")).Status.ShouldBe(200);
        var retired = await client.Put($"/policy/{uri}", """{"$set": {"status": "retired"}}""");
        retired.Status.ShouldBe(200, retired.Body?.ToJsonString());
    }

    [Fact]
    public async Task Create_answers_the_stored_document_with_every_field_and_timestamps()
    {
        var (name, uri, created) = await CreateAsync();
        var data = created.Data!.AsObject();
        data["policy_rule_uri"]!.GetValue<string>().ShouldBe(uri);
        foreach (var field in new[] { "policy_rule_uri", "name", "version", "release_tag", "metadata", "tags", "code", "code_sha256", "code_type", "type",
                     "policy_input_schema", "policy_output_schema", "policy_settings_schema", "policy_parameters_schema", "policy_settings",
                     "policy_parameters", "management_commands_schema", "description", "functionality_data", "resource_estimates", "status", "created_at", "updated_at" })
            data.ContainsKey(field).ShouldBeTrue($"missing {field}");
        data["status"]!.GetValue<string>().ShouldBe("active");
        data["created_at"]!.GetValue<string>().ShouldNotBeEmpty();
        data["policy_output_schema"].ShouldBeOfType<JsonObject>();
        created.Header("ETag").ShouldNotBeNullOrEmpty();
        created.Body!["success"]!.GetValue<bool>().ShouldBeTrue();
        name.ShouldStartWith("ip_allowlist");
    }

    [Fact]
    public async Task Get_accepts_the_plain_and_the_percent_encoded_uri_and_answers_the_revision_as_etag()
    {
        var (_, uri, created) = await CreateAsync();
        var plain = await client.Get($"/policy/{uri}");
        plain.Status.ShouldBe(200);
        plain.Data!["policy_rule_uri"]!.GetValue<string>().ShouldBe(uri);
        plain.Header("ETag").ShouldBe(created.Header("ETag"));
        var encoded = await client.Get($"/policy/{System.Uri.EscapeDataString(uri)}");
        encoded.Status.ShouldBe(200);
        encoded.Data!["policy_rule_uri"]!.GetValue<string>().ShouldBe(uri);
    }

    [Fact]
    public async Task Malformed_json_is_a_400_naming_the_problem_and_stores_nothing()
    {
        var answer = await client.Post("/policy", "{\"name\": \"broken_json\", \"version\": ");
        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("bad_request");
        answer.Message!.ShouldContain("not valid JSON");
        await ShouldNotBeStored("broken_json");
    }

    [Fact]
    public async Task A_body_that_is_not_json_content_is_a_400_naming_the_content_type()
    {
        var name = Unique("form_body");
        var answer = await client.Post("/policy", IpAllowlist(name, await server.StoreBundleAsync()).ToJsonString(), "text/plain");
        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("bad_request");
        answer.Message!.ShouldContain("text/plain");
        await ShouldNotBeStored(name);
    }

    [Fact]
    public async Task An_empty_body_or_a_json_array_is_a_400()
    {
        var empty = await client.Post("/policy", "");
        empty.Status.ShouldBe(400);
        empty.Message!.ShouldContain("empty");
        var array = await client.Post("/policy", "[1,2]");
        array.Status.ShouldBe(400);
        array.Message!.ShouldContain("array");
    }

    [Fact]
    public async Task Missing_required_fields_are_each_named()
    {
        var answer = await CreateBad(new JsonObject { ["name"] = "only_a_name" });
        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("validation_failed");
        foreach (var field in new[] { "version", "release_tag", "code", "type" }) answer.Message!.ShouldContain(field);
        var errors = answer.Body!["errors"]!.AsArray().Select(e => e!["path"]!.GetValue<string>()).ToList();
        errors.ShouldContain("version");
        errors.ShouldContain("code");
        await ShouldNotBeStored("only_a_name");
    }

    [Fact]
    public async Task Mistyped_fields_are_named_with_what_was_sent()
    {
        var name = Unique("mistyped");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["metadata"] = "not an object";
        body["version"] = 1;
        var answer = await CreateBad(body);
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("metadata");
        answer.Message!.ShouldContain("version");
        await ShouldNotBeStored(name);
    }

    [Fact]
    public async Task Parameters_violating_their_template_are_a_400_naming_the_path()
    {
        var name = Unique("bad_params");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1", "10.0.0.2", "not-an-ip") };
        var answer = await CreateBad(body);
        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("validation_failed");
        answer.Message!.ShouldContain("policy_parameters.local_allowlist[2]");
        await ShouldNotBeStored(name);
    }

    [Fact]
    public async Task Settings_violating_their_template_are_a_400_naming_the_path()
    {
        var name = Unique("bad_settings");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["policy_settings"]!["remote_allowlist_url"] = 42;
        var answer = await CreateBad(body);
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("policy_settings.remote_allowlist_url");
        await ShouldNotBeStored(name);
    }

    [Fact]
    public async Task A_policy_rule_uri_disagreeing_with_name_version_and_tag_is_a_400()
    {
        var name = Unique("uri_mismatch");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["policy_rule_uri"] = $"{name}:2.0-beta";
        var answer = await CreateBad(body);
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("policy_rule_uri");
        answer.Message!.ShouldContain($"{name}:1.0-beta");
        await ShouldNotBeStored(name);
    }

    [Fact]
    public async Task A_release_tag_with_a_dash_is_a_400()
    {
        var name = Unique("dash_tag");
        var answer = await CreateBad(IpAllowlist(name, await server.StoreBundleAsync(), tag: "be-ta"));
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("release_tag");
        await ShouldNotBeStored(name);
    }

    [Fact]
    public async Task A_duplicate_create_is_a_409_and_leaves_the_original_untouched()
    {
        var (name, uri, created) = await CreateAsync();
        var again = IpAllowlist(name, await server.StoreBundleAsync());
        again["description"] = "a different description";
        var answer = await client.Post("/policy", again.ToJsonString());
        answer.Status.ShouldBe(409);
        answer.Code.ShouldBe("conflict");
        answer.Message!.ShouldContain(uri);
        var read = await client.Get($"/policy/{uri}");
        read.Data!["description"]!.GetValue<string>().ShouldBe("Allows listed IPv4 addresses");
        read.Header("ETag").ShouldBe(created.Header("ETag"));
    }

    [Fact]
    public async Task Code_that_names_a_bundle_never_uploaded_is_a_400()
    {
        var name = Unique("no_bundle");
        var answer = await CreateBad(IpAllowlist(name, "bundle://sha256/" + new string('a', 64)));
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("POST /bundles");
        await ShouldNotBeStored(name);
    }

    [Fact]
    public async Task A_bundle_that_cannot_load_is_a_400_saying_where_inside_the_bundle_not_where_on_the_server()
    {
        var name = Unique("no_function");
        var code = (await server.Bundles.PutAsync(GridServer.Zip(("code/other.py", "x = 1\n")), TestContext.Current.CancellationToken)).Code;
        var answer = await CreateBad(IpAllowlist(name, code));
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain("no code/function.py (looked in code/)");
        answer.Message!.ShouldNotContain(code["bundle://sha256/".Length..]);
        answer.Message!.ShouldNotContain("/tmp");

        var opening = Unique("opens_own_file");
        var reading = (await server.Bundles.PutAsync(GridServer.Zip(("code/function.py",
            "import os\nclass AIOSv1PolicyRule:\n    def __init__(self, rule_id, settings, parameters):\n        open(os.path.join(os.path.dirname(__file__), 'missing.json'))\n")), TestContext.Current.CancellationToken)).Code;
        var raised = await CreateBad(IpAllowlist(opening, reading));
        raised.Status.ShouldBe(400, raised.Body?.ToJsonString());
        raised.Message!.ShouldContain("'code/missing.json'");
        raised.Message!.ShouldNotContain("/tmp");
        await ShouldNotBeStored(name);
    }

    [Fact]
    public async Task Code_with_an_unknown_scheme_is_a_400()
    {
        var name = Unique("ftp_code");
        var answer = await CreateBad(IpAllowlist(name, "ftp://example.com/bundle.zip"));
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("code");
        await ShouldNotBeStored(name);
    }

    [Fact]
    public async Task Unknown_policies_are_404_on_every_verb()
    {
        var uri = "nobody_registered:1.0-beta";
        (await client.Get($"/policy/{uri}")).Status.ShouldBe(404);
        var put = await client.Put($"/policy/{uri}", """{"$set": {"description": "x"}}""");
        put.Status.ShouldBe(404);
        put.Code.ShouldBe("not_found");
        put.Message!.ShouldContain(uri);
        (await client.Delete($"/policy/{uri}")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task Update_with_set_changes_the_field_keeps_created_at_and_moves_the_revision()
    {
        var (_, uri, created) = await CreateAsync();
        var updated = await client.Put($"/policy/{uri}", """{"$set": {"policy_parameters.local_allowlist": ["10.0.0.1", "10.0.0.2"], "description": "two hosts"}}""");
        updated.Status.ShouldBe(200, updated.Body?.ToJsonString());
        updated.Data!["policy_parameters"]!["local_allowlist"]!.AsArray().Count.ShouldBe(2);
        updated.Data!["created_at"]!.GetValue<string>().ShouldBe(created.Data!["created_at"]!.GetValue<string>());
        updated.Header("ETag").ShouldNotBe(created.Header("ETag"));
        (await client.Get($"/policy/{uri}")).Data!["description"]!.GetValue<string>().ShouldBe("two hosts");
    }

    [Fact]
    public async Task Update_by_full_replacement_is_revalidated()
    {
        var (name, uri, _) = await CreateAsync();
        var replacement = IpAllowlist(name, await server.StoreBundleAsync());
        replacement["description"] = "replaced";
        var ok = await client.Put($"/policy/{uri}", replacement.ToJsonString());
        ok.Status.ShouldBe(200, ok.Body?.ToJsonString());
        ok.Data!["description"]!.GetValue<string>().ShouldBe("replaced");

        replacement["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("nope") };
        var bad = await client.Put($"/policy/{uri}", replacement.ToJsonString());
        bad.Status.ShouldBe(400);
        bad.Message!.ShouldContain("policy_parameters.local_allowlist[0]");
        (await client.Get($"/policy/{uri}")).Data!["policy_parameters"]!["local_allowlist"]![0]!.GetValue<string>().ShouldBe("10.0.0.1");
    }

    [Fact]
    public async Task An_update_that_changes_identity_fields_is_a_400_and_changes_nothing()
    {
        var (_, uri, created) = await CreateAsync();
        var answer = await client.Put($"/policy/{uri}", """{"$set": {"version": "2.0"}}""");
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("version");
        answer.Message!.ShouldContain("identity");
        var read = await client.Get($"/policy/{uri}");
        read.Header("ETag").ShouldBe(created.Header("ETag"));
        (await client.Get($"/policy/{PolicyDocuments.Uri(uri.Split(':')[0], "2.0")}")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task An_unknown_update_operator_is_a_400()
    {
        var (_, uri, _) = await CreateAsync();
        var answer = await client.Put($"/policy/{uri}", """{"$rename": {"description": "desc"}}""");
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("$rename");
    }

    [Fact]
    public async Task If_match_with_a_stale_revision_is_a_409_and_the_current_one_succeeds()
    {
        var (_, uri, created) = await CreateAsync();
        var etag = created.Header("ETag")!;
        (await client.Put($"/policy/{uri}", """{"$set": {"description": "first"}}""", ifMatch: etag)).Status.ShouldBe(200);
        var stale = await client.Put($"/policy/{uri}", """{"$set": {"description": "second"}}""", ifMatch: etag);
        stale.Status.ShouldBe(409);
        stale.Code.ShouldBe("conflict");
        stale.Message!.ShouldContain("revision");
        (await client.Get($"/policy/{uri}")).Data!["description"]!.GetValue<string>().ShouldBe("first");
        var staleDelete = await client.Delete($"/policy/{uri}", ifMatch: etag);
        staleDelete.Status.ShouldBe(409);
        (await client.Get($"/policy/{uri}")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Concurrent_updates_without_if_match_all_succeed_and_every_inc_counts()
    {
        var (_, uri, _) = await CreateAsync();

        // Enough writers that, racing each other, some would lose all their attempts: in one process they take turns.
        var answers = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => client.Put($"/policy/{uri}", """{"$inc": {"metadata.hits": 1}}""")));

        answers.Select(a => a.Status).ShouldAllBe(s => s == 200, string.Join("\n", answers.Where(a => a.Status != 200).Select(a => a.Body?.ToJsonString())));
        (await client.Get($"/policy/{uri}")).Data!["metadata"]!["hits"]!.GetValue<int>().ShouldBe(100);
    }

    [Fact]
    public async Task Updates_of_one_document_in_one_process_take_turns_and_of_different_documents_do_not()
    {
        var ct = TestContext.Current.CancellationToken;
        var ids = new[] { Unique("turns_a"), Unique("turns_b") };
        foreach (var id in ids) await server.Store.CreateAsync("turn_test", id, new JsonObject { ["n"] = 0 }, ct);
        var running = new Dictionary<string, int> { [ids[0]] = 0, [ids[1]] = 0 };
        var most = new Dictionary<string, int> { [ids[0]] = 0, [ids[1]] = 0 };
        var bothAtOnce = false;

        await Task.WhenAll(Enumerable.Range(0, 20).Select(i => PolicyGrid.Api.Documents.OptimisticUpdate.ApplyAsync(server.Store, "turn_test", ids[i % 2], null,
            async (current, token) =>
            {
                var id = current.Id;
                lock (running)
                {
                    most[id] = Math.Max(most[id], ++running[id]);
                    bothAtOnce |= running.Values.All(r => r > 0);
                }
                await Task.Delay(5, token);
                lock (running) running[id]--;
                return new JsonObject { ["n"] = current.Body["n"]!.GetValue<int>() + 1 };
            },
            () => PolicyGrid.Core.Errors.Problems.NotFound("missing"), (_, _) => PolicyGrid.Core.Errors.Problems.Conflict("mismatch"), ct)));

        most.Values.ShouldAllBe(m => m == 1); // never two changes of one document at once: none could lose a race
        bothAtOnce.ShouldBeTrue();            // while the other document's writers went on
        foreach (var id in ids) (await server.Store.GetAsync("turn_test", id, ct))!.Body["n"]!.GetValue<int>().ShouldBe(10);
    }

    [Fact]
    public async Task Concurrent_replacements_without_if_match_all_succeed_and_the_last_writer_wins()
    {
        var (name, uri, _) = await CreateAsync();
        var bundle = await server.StoreBundleAsync();

        var answers = await Task.WhenAll(Enumerable.Range(0, 10).Select(i =>
        {
            var replacement = IpAllowlist(name, bundle);
            replacement["description"] = $"writer {i}";
            return client.Put($"/policy/{uri}", replacement.ToJsonString());
        }));

        answers.Select(a => a.Status).ShouldAllBe(s => s == 200);
        var description = (await client.Get($"/policy/{uri}")).Data!["description"]!.GetValue<string>();
        answers.Select(a => a.Data!["description"]!.GetValue<string>()).ShouldContain(description);
    }

    [Fact]
    public async Task Secret_fields_read_as_stars_everywhere_but_are_stored_and_kept_on_update()
    {
        var (name, uri, created) = await CreateAsync();
        created.Data!["policy_settings"]!["api_key"]!.GetValue<string>().ShouldBe("***");
        (await client.Get($"/policy/{uri}")).Data!["policy_settings"]!["api_key"]!.GetValue<string>().ShouldBe("***");
        var query = await client.Post("/policy/query", $$"""{"name": "{{name}}"}""");
        query.Data!.AsArray().Single()!["policy_settings"]!["api_key"]!.GetValue<string>().ShouldBe("***");

        // A client that read "***" and sends the document back must not overwrite the secret with the mask.
        var roundTrip = (await client.Get($"/policy/{uri}")).Data!.AsObject();
        roundTrip["description"] = "edited after a read";
        (await client.Put($"/policy/{uri}", roundTrip.ToJsonString())).Status.ShouldBe(200);
        var stored = await server.Store.GetAsync(Collections.Policies, uri, TestContext.Current.CancellationToken);
        stored!.Body["policy_settings"]!["api_key"]!.GetValue<string>().ShouldBe("s3cr3t-key");
        stored.Body["description"]!.GetValue<string>().ShouldBe("edited after a read");
    }

    [Theory]
    [InlineData("nul\u0000name", "control characters")]
    [InlineData("pc%41x", "must not contain '%'")]
    [InlineData("LONG", "characters long; at most 256")]
    public async Task A_name_that_could_not_be_addressed_in_a_path_is_a_400_and_nothing_is_stored(string name, string rule)
    {
        if (name == "LONG") name = new string('n', 300);
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        var answer = await client.Post("/policy", body.ToJsonString());
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain(rule);
        answer.Message!.Length.ShouldBeLessThan(1000);
        await ShouldNotBeStored(name);
        (await client.Post("/executor", $$"""{"executor_id": {{System.Text.Json.JsonSerializer.Serialize(name)}}, "executor_host_uri": "http://127.0.0.1:9"}""")).Status.ShouldBe(400);
    }

    [Theory]
    [InlineData("wasm_v1")]
    [InlineData(" ")]
    public async Task A_type_this_server_cannot_run_is_a_400_naming_type_and_nothing_is_stored(string type)
    {
        var name = Unique("typed");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["type"] = type;
        var answer = await client.Post("/policy", body.ToJsonString());
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain("type");
        answer.Message!.ShouldContain("python_class_v1");
        await ShouldNotBeStored(name);
    }

    [Fact]
    public async Task A_stored_policy_of_another_type_is_not_run_as_python()
    {
        var uri = await server.StorePolicyAsync(Unique("other_kind"), GridServer.EchoPolicy, new JsonObject { ["type"] = "wasm_v1" });
        var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, "{}"));
        answer.Status.ShouldBe(422, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain("'wasm_v1', which this runtime does not run");
    }

    [Fact]
    public async Task An_operator_naming_a_field_the_document_does_not_have_is_a_400_not_a_silent_200()
    {
        var (_, uri, created) = await CreateAsync();
        var typo = await client.Put($"/policy/{uri}", """{"$set": {"descripton": "typo", "description": "meant"}}""");
        typo.Status.ShouldBe(400, typo.Body?.ToJsonString());
        typo.Message!.ShouldContain("descripton: is not a field of this document");
        (await client.Put($"/policy/{uri}", """{"$unset": {"nonsense.deep": ""}}""")).Status.ShouldBe(400);
        var stored = await client.Get($"/policy/{uri}");
        stored.Header("ETag").ShouldBe(created.Header("ETag"));
        // Free-form objects take any key, and known fields still change.
        (await client.Put($"/policy/{uri}", """{"$set": {"metadata.anything": 1, "description": "meant"}}""")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Queries_cannot_read_a_secret_back_they_see_it_as_stars_as_reads_do()
    {
        var (name, uri, _) = await CreateAsync();
        async Task<List<string>> Found(string filter, string sort = "")
        {
            var answer = await client.Post("/policy/query" + sort, $$"""{"$and": [{"name": "{{name}}"}, {{filter}}]}""");
            answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
            return [.. answer.Data!.AsArray().Select(p => p!["policy_rule_uri"]!.GetValue<string>())];
        }
        // Guessing the stored value ("s3cr3t-key") a character at a time, or ruling values out, learns nothing.
        (await Found("""{"policy_settings.api_key": {"$regex": "^s3"}}""")).ShouldBeEmpty();
        (await Found("""{"policy_settings.api_key": "s3cr3t-key"}""")).ShouldBeEmpty();
        (await Found("""{"policy_settings.api_key": {"$ne": "s3cr3t-key"}}""")).ShouldBe([uri]);
        (await Found("""{"policy_settings.api_key": {"$gte": "s"}}""")).ShouldBeEmpty();
        (await Found("""{"policy_settings": {"remote_allowlist_url": "", "api_key": "s3cr3t-key"}}""")).ShouldBeEmpty();
        (await Found("""{"policy_settings.api_key": "***"}""")).ShouldBe([uri]);
        // What is not secret is still found, also beside a secret; sorting by a secret works on the stars.
        (await Found("""{"policy_settings.remote_allowlist_url": ""}""")).ShouldBe([uri]);
        (await Found("""{"policy_parameters.local_allowlist": "10.0.0.1"}""", "?sort=policy_settings.api_key:desc")).ShouldBe([uri]);
    }

    [Fact]
    public async Task Status_moves_through_the_lifecycle_and_deprecated_reads_carry_a_deprecation_header()
    {
        var (_, uri, _) = await CreateAsync();
        var deprecated = await client.Put($"/policy/{uri}", """{"$set": {"status": "deprecated"}}""");
        deprecated.Status.ShouldBe(200);
        deprecated.Header("Deprecation").ShouldNotBeNull();
        (await client.Get($"/policy/{uri}")).Header("Deprecation").ShouldNotBeNull();
        (await client.Put($"/policy/{uri}", """{"$set": {"status": "retired"}}""")).Data!["status"]!.GetValue<string>().ShouldBe("retired");
        var bad = await client.Put($"/policy/{uri}", """{"$set": {"status": "archived"}}""");
        bad.Status.ShouldBe(400);
        bad.Message!.ShouldContain("status");
    }

    [Fact]
    public async Task Delete_answers_the_deleted_document_and_it_is_gone()
    {
        var (_, uri, _) = await CreateAsync();
        var deleted = await client.Delete($"/policy/{System.Uri.EscapeDataString(uri)}");
        deleted.Status.ShouldBe(200);
        deleted.Data!["policy_rule_uri"]!.GetValue<string>().ShouldBe(uri);
        deleted.Data!["policy_settings"]!["api_key"]!.GetValue<string>().ShouldBe("***");
        (await client.Get($"/policy/{uri}")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task Delete_is_a_409_while_a_function_or_graph_uses_the_policy_unless_forced()
    {
        var (name, uri, _) = await CreateAsync();
        var ct = TestContext.Current.CancellationToken;
        var function = $"fn_{name}";
        await server.Store.CreateAsync(Collections.Functions, function, new JsonObject { ["function_id"] = function, ["function_policy_rule_uri"] = uri }, ct);
        await server.Store.CreateAsync(Collections.Graphs, $"g_{name}:1.0-beta", new JsonObject { ["graph_uri"] = $"g_{name}:1.0-beta", ["graph_function_ids"] = new JsonArray(function) }, ct);

        var refused = await client.Delete($"/policy/{uri}");
        refused.Status.ShouldBe(409);
        refused.Message!.ShouldContain(function);
        refused.Message!.ShouldContain($"g_{name}:1.0-beta");
        refused.Message!.ShouldContain("force=true");
        (await client.Get($"/policy/{uri}")).Status.ShouldBe(200);

        (await client.Delete($"/policy/{uri}?force=true")).Status.ShouldBe(200);
        (await client.Get($"/policy/{uri}")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task Query_filters_with_regex_and_gte_and_honours_sort_skip_and_limit()
    {
        var stem = Unique("q");
        foreach (var (version, risk) in new[] { ("1.9", 1), ("1.10", 5), ("2.0", 9) })
        {
            var body = IpAllowlist(stem, await server.StoreBundleAsync(), version: version);
            body["metadata"]!["risk"] = risk;
            (await client.Post("/policy", body.ToJsonString())).Status.ShouldBe(200);
        }
        var found = await client.Post("/policy/query?sort=version:desc", $$$"""{"name": "{{{stem}}}", "tags": {"$regex": "secur"}, "metadata.risk": {"$gte": 5}}""");
        found.Status.ShouldBe(200);
        found.Data!.AsArray().Select(d => d!["version"]!.GetValue<string>()).ShouldBe(["2.0", "1.10"]);

        var page = await client.Post("/policy/query?sort=version:asc&skip=1&limit=1", $$"""{"name": "{{stem}}"}""");
        page.Data!.AsArray().Select(d => d!["version"]!.GetValue<string>()).ShouldBe(["1.10"]);
        var audience = await client.Post("/policy/query", $$$"""{"name": "{{{stem}}}", "metadata.audience": {"$in": ["partners"]}}""");
        audience.Data!.AsArray().Count.ShouldBe(3);
    }

    [Fact]
    public async Task Query_compares_numbers_beyond_decimal_range_by_value()
    {
        var stem = Unique("big");
        foreach (var (version, risk) in new[] { ("1.0", "5"), ("2.0", "1e30"), ("3.0", "-1e30") })
        {
            var body = IpAllowlist(stem, await server.StoreBundleAsync(), version: version);
            body["metadata"]!["risk"] = JsonNode.Parse(risk);
            (await client.Post("/policy", body.ToJsonString())).Status.ShouldBe(200);
        }
        async Task<string[]> Versions(string condition, string sort = "version:asc")
        {
            var found = await client.Post($"/policy/query?sort={sort}", $$"""{"name": "{{stem}}", "metadata.risk": {{condition}}}""");
            found.Status.ShouldBe(200, found.Body?.ToJsonString());
            return found.Data!.AsArray().Select(d => d!["version"]!.GetValue<string>()).ToArray();
        }
        (await Versions("""{"$gt": 1e29}""")).ShouldBe(["2.0"]);
        (await Versions("""{"$gt": 5}""")).ShouldBe(["2.0"]);
        (await Versions("""{"$lt": -1e29}""")).ShouldBe(["3.0"]);
        (await Versions("1e30")).ShouldBe(["2.0"]);
        (await Versions("""{"$in": [1e30, -1e30]}""")).ShouldBe(["2.0", "3.0"]);
        (await Versions("""{"$exists": true}""", "metadata.risk:asc")).ShouldBe(["3.0", "1.0", "2.0"]);
    }

    [Fact]
    public async Task Query_with_an_empty_body_matches_everything_up_to_the_default_limit()
    {
        await CreateAsync();
        var all = await client.Call(HttpMethod.Post, "/policy/query");
        all.Status.ShouldBe(200);
        all.Data!.AsArray().Count.ShouldBeGreaterThan(0);
    }

    [Theory]
    [InlineData("""{"name": {"$near": 3}}""", "$near")]
    [InlineData("""{"$where": "1"}""", "$where")]
    public async Task Query_with_an_unknown_operator_is_a_400_naming_it(string filter, string op)
    {
        var answer = await client.Post("/policy/query", filter);
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain(op);
    }

    [Theory]
    [InlineData("/policy/query", """{"version": {"$gt": 1}}""", "'version' in $gt compares 1, a number")]
    [InlineData("/policy/query", """{"version": 1}""", "'version' compares 1, a number")]
    [InlineData("/policy/query", """{"version": {"$in": [1, 2]}}""", "'version' in $in compares 1, a number")]
    [InlineData("/graphs/query", """{"graph_version": {"$lt": 1.10}}""", "'graph_version' in $lt compares 1.10, a number")]
    public async Task Query_comparing_a_version_with_a_number_is_a_400_asking_for_a_string(string route, string filter, string expected)
    {
        // Versions are stored as strings: this answered 200 with nothing, though "1.9" and "1.10" exist.
        (await client.Post("/policy", IpAllowlist(Unique("v"), await server.StoreBundleAsync(), version: "1.10").ToJsonString())).Status.ShouldBe(200);
        var answer = await client.Post(route, filter);
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("bad_request");
        answer.Message!.ShouldContain(expected);
        answer.Message!.ShouldContain("as a string");
    }

    [Theory]
    [InlineData("limit=0", "limit")]
    [InlineData("limit=1001", "1000")]
    [InlineData("limit=ten", "limit")]
    [InlineData("skip=-1", "skip")]
    [InlineData("sort=name:sideways", "asc or desc")]
    public async Task Query_with_a_bad_window_is_a_400_naming_it(string query, string expected)
    {
        var answer = await client.Post($"/policy/query?{query}", "{}");
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain(expected);
    }

    [Fact]
    public async Task A_body_over_the_limit_is_a_413_and_stores_nothing()
    {
        var name = Unique("huge");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["description"] = new string('x', 1024 * 1024 + 10);
        var answer = await client.Post("/policy", body.ToJsonString());
        answer.Status.ShouldBe(413);
        answer.Code.ShouldBe("too_large");
        answer.Message!.ShouldContain("limit");
        await ShouldNotBeStored(name);
    }
}
