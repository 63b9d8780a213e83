using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

public sealed class ExecutorsApiTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    private static string Executor(string id, string uri = "http://127.0.0.1:19999", string status = "healthy") => new JsonObject
    {
        ["executor_id"] = id,
        ["executor_host_uri"] = uri,
        ["executor_metadata"] = new JsonObject { ["labels"] = new JsonObject { ["zone"] = "eu-1" } },
        ["executor_hardware_info"] = new JsonObject { ["vcpus"] = new JsonObject { ["count"] = 8 }, ["memory"] = "32Gi" },
        ["executor_status"] = status,
    }.ToJsonString();

    private async Task ShouldNotBeStored(string id) =>
        (await server.Store.GetAsync(Collections.Executors, id, TestContext.Current.CancellationToken)).ShouldBeNull();

    [Fact]
    public async Task The_built_in_local_executor_is_registered_at_start()
    {
        var local = await client.Get("/executor/local");
        local.Status.ShouldBe(200);
        local.Data!["executor_host_uri"]!.GetValue<string>().ShouldBe("inproc://local");
        local.Data!["executor_status"]!.GetValue<string>().ShouldBe("healthy");
        local.Header("ETag").ShouldNotBeNull();
    }

    [Fact]
    public async Task Create_read_update_query_and_delete_an_executor()
    {
        var id = Unique("node");
        var created = await client.Post("/executor", Executor(id));
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        created.Data!["executor_id"]!.GetValue<string>().ShouldBe(id);

        var updated = await client.Put($"/executor/{id}", """{"$set": {"executor_metadata.labels.zone": "eu-2"}}""", ifMatch: created.Header("ETag"));
        updated.Status.ShouldBe(200, updated.Body?.ToJsonString());
        updated.Data!["executor_metadata"]!["labels"]!["zone"]!.GetValue<string>().ShouldBe("eu-2");

        var found = await client.Post("/executor/query", $$$"""{"executor_id": "{{{id}}}", "executor_hardware_info.vcpus.count": {"$gte": 4}}""");
        found.Data!.AsArray().Single()!["executor_metadata"]!["labels"]!["zone"]!.GetValue<string>().ShouldBe("eu-2");

        var deleted = await client.Delete($"/executor/{id}");
        deleted.Status.ShouldBe(200);
        deleted.Data!["executor_id"]!.GetValue<string>().ShouldBe(id);
        (await client.Get($"/executor/{id}")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task Concurrent_updates_without_if_match_all_succeed_and_every_inc_counts_but_a_stale_if_match_is_a_409()
    {
        var id = Unique("node");
        var created = await client.Post("/executor", Executor(id));
        created.Status.ShouldBe(200, created.Body?.ToJsonString());

        var answers = await Task.WhenAll(Enumerable.Range(0, 30).Select(_ => client.Put($"/executor/{id}", """{"$inc": {"executor_metadata.hits": 1}}""")));

        answers.Select(a => a.Status).ShouldAllBe(s => s == 200, string.Join("\n", answers.Where(a => a.Status != 200).Select(a => a.Body?.ToJsonString())));
        (await client.Get($"/executor/{id}")).Data!["executor_metadata"]!["hits"]!.GetValue<int>().ShouldBe(30);
        var stale = await client.Put($"/executor/{id}", """{"$inc": {"executor_metadata.hits": 1}}""", ifMatch: created.Header("ETag"));
        stale.Status.ShouldBe(409);
        stale.Message!.ShouldContain("If-Match");
        (await client.Get($"/executor/{id}")).Data!["executor_metadata"]!["hits"]!.GetValue<int>().ShouldBe(30);
    }

    [Fact]
    public async Task A_duplicate_executor_is_a_409()
    {
        var id = Unique("dup");
        (await client.Post("/executor", Executor(id))).Status.ShouldBe(200);
        var again = await client.Post("/executor", Executor(id, "http://10.0.0.9:8080"));
        again.Status.ShouldBe(409);
        again.Message!.ShouldContain(id);
        (await client.Get($"/executor/{id}")).Data!["executor_host_uri"]!.GetValue<string>().ShouldBe("http://127.0.0.1:19999");
    }

    [Theory]
    [InlineData("""{"executor_id": "missing_uri"}""", "executor_host_uri")]
    [InlineData("""{"executor_id": "ftp_node", "executor_host_uri": "ftp://host"}""", "scheme")]
    [InlineData("""{"executor_id": "bad_status", "executor_host_uri": "http://h:1", "executor_status": "sleepy"}""", "executor_status")]
    [InlineData("""{"executor_id": "bad labels", "executor_host_uri": "http://h:1"}""", "whitespace")]
    [InlineData("""{"executor_id": "typed", "executor_host_uri": "http://h:1", "executor_metadata": []}""", "executor_metadata")]
    public async Task Bad_executor_documents_are_a_400_naming_the_field_and_store_nothing(string body, string expected)
    {
        var answer = await client.Post("/executor", body);
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain(expected);
        var id = JsonNode.Parse(body)!["executor_id"]!.GetValue<string>();
        await ShouldNotBeStored(id);
    }

    private async Task StillServes() => (await client.Get("/executor/local")).Status.ShouldBe(200);

    [Theory]
    [InlineData("""{"vcpus": 4}""", "executor_hardware_info.vcpus: must be an object")]
    [InlineData("""{"vcpus": {"count": "x"}}""", "executor_hardware_info.vcpus.count: must be a number")]
    [InlineData("""{"vcpus": {"count": -2}}""", "executor_hardware_info.vcpus.count: must be at least 0")]
    [InlineData("""{"vcpus": {"count": 4, "free": true}}""", "executor_hardware_info.vcpus.free: must be a number")]
    [InlineData("""{"memory": "lots"}""", "executor_hardware_info.memory")]
    [InlineData("""{"memory": {"gb": 32}}""", "executor_hardware_info.memory")]
    public async Task Hardware_info_that_allocation_cannot_read_is_a_400_naming_the_field_and_stores_nothing(string hardware, string expected)
    {
        var id = Unique("hw");
        var body = JsonNode.Parse(Executor(id))!.AsObject();
        body["executor_hardware_info"] = JsonNode.Parse(hardware);

        var answer = await client.Post("/executor", body.ToJsonString());

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("validation_failed");
        answer.Message.ShouldContain(expected);
        await ShouldNotBeStored(id);
        await StillServes();
    }

    [Theory]
    [InlineData("""{"vcpus": {"count": 2.5, "free": 0}, "memory": 17179869184}""")]
    [InlineData("""{"memory": "512Mi", "gpus": ["a100"]}""")]
    [InlineData("""{}""")]
    public async Task Hardware_info_in_the_documented_shape_is_accepted(string hardware)
    {
        var id = Unique("hw-ok");
        var body = JsonNode.Parse(Executor(id))!.AsObject();
        body["executor_hardware_info"] = JsonNode.Parse(hardware);

        var answer = await client.Post("/executor", body.ToJsonString());

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        JsonNode.DeepEquals(answer.Data!["executor_hardware_info"], JsonNode.Parse(hardware)).ShouldBeTrue();
    }

    [Theory]
    [InlineData("""{"$set": {"executor_hardware_info.vcpus.count": "x"}}""", "executor_hardware_info.vcpus.count")]
    [InlineData("""{"$set": {"executor_hardware_info.vcpus": 4}}""", "executor_hardware_info.vcpus")]
    [InlineData("""{"$inc": {"executor_hardware_info.vcpus.count": -100}}""", "executor_hardware_info.vcpus.count: must be at least 0")]
    [InlineData("""{"$set": {"executor_hardware_info.memory": true}}""", "executor_hardware_info.memory")]
    public async Task An_update_that_breaks_the_hardware_info_is_a_400_and_changes_nothing(string update, string expected)
    {
        var id = Unique("hw-put");
        (await client.Post("/executor", Executor(id))).Status.ShouldBe(200);
        var before = await server.Store.GetAsync(Collections.Executors, id, TestContext.Current.CancellationToken);

        var answer = await client.Put($"/executor/{id}", update);

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("validation_failed");
        answer.Message.ShouldContain(expected);
        var after = await server.Store.GetAsync(Collections.Executors, id, TestContext.Current.CancellationToken);
        after!.Revision.ShouldBe(before!.Revision);
        JsonNode.DeepEquals(after.Body, before.Body).ShouldBeTrue();
        await StillServes();
    }

    [Theory]
    [InlineData("""{"$set": {"executor_host_uri": "http://127.0.0.1:9"}}""", "executor_host_uri")]
    [InlineData("""{"$unset": {"executor_host_uri": ""}}""", "executor_host_uri")]
    [InlineData("""{"$set": {"executor_id": "elsewhere"}}""", "executor_id")]
    [InlineData("""{"executor_host_uri": "http://127.0.0.1:9"}""", "executor_host_uri")]
    public async Task The_built_in_executor_cannot_be_repointed_or_renamed(string update, string field)
    {
        var before = await server.Store.GetAsync(Collections.Executors, "local", TestContext.Current.CancellationToken);

        var answer = await client.Put("/executor/local", update);

        answer.Status.ShouldBe(409, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("conflict");
        answer.Message.ShouldContain("built-in");
        answer.Message.ShouldContain(field);
        var after = await server.Store.GetAsync(Collections.Executors, "local", TestContext.Current.CancellationToken);
        after!.Revision.ShouldBe(before!.Revision);
        after.Body["executor_host_uri"]!.GetValue<string>().ShouldBe("inproc://local");
        (await server.Store.GetAsync(Collections.Executors, "elsewhere", TestContext.Current.CancellationToken)).ShouldBeNull();
        var echo = await server.StorePolicyAsync(Unique("still-local"), GridServer.EchoPolicy);
        var run = await client.Post("/executor/local/execute_policy", $$$"""{"policy_rule_uri": "{{{echo}}}", "input_data": {"n": 1}}""");
        run.Status.ShouldBe(200, run.Body?.ToJsonString());
        run.Data!["echo"]!["n"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task The_built_in_executor_keeps_taking_label_and_metadata_changes()
    {
        var key = Unique("team");
        var answer = await client.Put("/executor/local", $$$"""{"$set": {"executor_metadata.labels.{{{key}}}": "ops", "executor_metadata.note": "shared"}}""");

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["executor_metadata"]!["labels"]![key]!.GetValue<string>().ShouldBe("ops");
        answer.Data!["executor_host_uri"]!.GetValue<string>().ShouldBe("inproc://local");
        // A full replacement that repeats the address (or leaves the id out) is no move either.
        var current = (await client.Get("/executor/local")).Data!.AsObject();
        current.Remove("executor_id");
        (await client.Put("/executor/local", current.ToJsonString())).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Unknown_executors_are_404_and_identity_cannot_change()
    {
        (await client.Get("/executor/nobody")).Status.ShouldBe(404);
        (await client.Put("/executor/nobody", """{"$set": {"executor_status": "draining"}}""")).Status.ShouldBe(404);
        (await client.Delete("/executor/nobody")).Status.ShouldBe(404);

        var id = Unique("ident");
        (await client.Post("/executor", Executor(id))).Status.ShouldBe(200);
        var rename = await client.Put($"/executor/{id}", """{"$set": {"executor_id": "other"}}""");
        rename.Status.ShouldBe(400);
        rename.Message!.ShouldContain("executor_id");
    }

    [Fact]
    public async Task The_built_in_executor_cannot_be_deleted()
    {
        var answer = await client.Delete("/executor/local");
        answer.Status.ShouldBe(409);
        answer.Message!.ShouldContain("draining");
        (await client.Get("/executor/local")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Execute_on_an_unknown_executor_is_a_404()
    {
        var answer = await client.Post("/executor/nowhere/execute_policy", """{"policy_rule_uri": "ip_allowlist:1.0-beta", "input_data": {"ip": "10.0.0.1"}}""");
        answer.Status.ShouldBe(404);
        answer.Message!.ShouldContain("nowhere");
    }

    [Theory]
    [InlineData("""{"input_data": {}}""", "policy_rule_uri: is required")]
    [InlineData("""{"policy_rule_uri": "no-colon", "input_data": {}}""", "policy_rule_uri")]
    [InlineData("""{"policy_rule_uri": "p:1.0-beta"}""", "input_data")]
    [InlineData("""{"policy_rule_uri": "p:1.0-beta", "input_data": [1]}""", "input_data: must be a JSON object")]
    [InlineData("""{"policy_rule_uri": "p:1.0-beta", "input_data": {}, "parameters": "x"}""", "parameters")]
    [InlineData("""{"policy_rule_uri": "p:1.0-beta", "input_data": {}, "timeout_seconds": -1}""", "timeout_seconds")]
    [InlineData("""{"policy_rule_uri": "p:1.0-beta", "input_data": {}, "context_key": 7}""", "context_key")]
    public async Task Bad_execute_bodies_are_a_400_naming_the_field(string body, string expected)
    {
        var answer = await client.Post("/executor/local/execute_policy", body);
        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("validation_failed");
        answer.Message!.ShouldContain(expected);
    }

    [Theory]
    [InlineData("""{"policy_rule_uri": "p:1.0-beta", "data": {}}""", "action")]
    [InlineData("""{"policy_rule_uri": "p:1.0-beta", "action": "get_state", "data": 3}""", "data")]
    public async Task Bad_management_bodies_are_a_400_naming_the_field(string body, string expected)
    {
        var answer = await client.Post("/executor/local/management", body);
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain(expected);
    }

    [Fact]
    public async Task A_draining_executor_answers_503_without_being_called()
    {
        var id = Unique("drain");
        (await client.Post("/executor", Executor(id, status: "draining"))).Status.ShouldBe(200);
        var answer = await client.Post($"/executor/{id}/execute_policy", """{"policy_rule_uri": "p:1.0-beta", "input_data": {}}""");
        answer.Status.ShouldBe(503);
        answer.Code.ShouldBe("backend_unavailable");
        answer.Message!.ShouldContain("draining");
        answer.Header("Retry-After").ShouldNotBeNull();
    }

    [Fact]
    public async Task An_executor_whose_scheme_this_server_cannot_reach_is_stored_with_a_warning_and_its_calls_are_a_502_naming_it()
    {
        var id = Unique("dapr");
        var created = await client.Post("/executor", Executor(id, "dapr://policy-executor"));
        created.Status.ShouldBe(200);
        created.Body!["warnings"]!.AsArray().Single()!.GetValue<string>()
            .ShouldStartWith($"this server has no transport for 'dapr://' executors: execute_policy and management calls on '{id}' through it answer 502");
        var moved = await client.Put($"/executor/{id}", """{"$set": {"executor_host_uri": "http://127.0.0.1:19999"}}""");
        moved.Body!.AsObject().ContainsKey("warnings").ShouldBeFalse();
        (await client.Put($"/executor/{id}", """{"$set": {"executor_host_uri": "dapr://policy-executor"}}""")).Body!["warnings"].ShouldNotBeNull();
        var answer = await client.Post($"/executor/{id}/execute_policy", """{"policy_rule_uri": "p:1.0-beta", "input_data": {}}""");
        answer.Status.ShouldBe(502);
        answer.Code.ShouldBe("backend_error");
        answer.Message!.ShouldContain("dapr://");
    }
}
