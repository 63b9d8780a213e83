using System.Text.Json.Nodes;
using PolicyGrid.Api.Documents;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// A whole-document body naming a field its type does not have is stored without it, as before, and the answer says
/// so in <c>warnings</c>, with the field probably meant: a typo no longer vanishes without a word.
/// </summary>
public sealed class IgnoredFieldsTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    [Fact]
    public async Task A_policy_created_with_a_misspelt_field_is_stored_without_it_and_the_answer_names_the_field_meant()
    {
        var name = Unique("typo");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["policy_paramters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.9") };
        body["Description"] = "case slip";
        body["x_team"] = "platform";

        var created = await client.Post("/policy", body.ToJsonString());

        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        created.Data!.AsObject().ContainsKey("policy_paramters").ShouldBeFalse();
        var warnings = created.Body!["warnings"]!.AsArray().Select(w => w!.GetValue<string>()).ToList();
        warnings.Count.ShouldBe(3);
        warnings[0].ShouldBe("'policy_paramters' is not a field of a policy and was not stored; did you mean 'policy_parameters'?");
        warnings[1].ShouldBe("'Description' is not a field of a policy and was not stored; did you mean 'description'?");
        warnings[2].ShouldStartWith("'x_team' is not a field of a policy and was not stored (fields: policy_rule_uri, name,");
        (await client.Get($"/policy/{Uri(name)}")).Body!.AsObject().ContainsKey("warnings").ShouldBeFalse();
    }

    [Fact]
    public async Task A_body_with_only_known_fields_answers_no_warnings_key_at_all()
    {
        var name = Unique("clean");
        var created = await client.Post("/policy", IpAllowlist(name, await server.StoreBundleAsync()).ToJsonString());

        created.Status.ShouldBe(200);
        created.Body!.AsObject().ContainsKey("warnings").ShouldBeFalse();
        var updated = await client.Put($"/policy/{Uri(name)}", """{"$set": {"description": "set by operator"}}""");
        updated.Status.ShouldBe(200);
        updated.Body!.AsObject().ContainsKey("warnings").ShouldBeFalse();
    }

    [Fact]
    public async Task A_replacement_put_warns_of_its_unknown_fields_and_an_operator_on_one_stays_a_400()
    {
        var name = Unique("replace");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        (await client.Post("/policy", body.ToJsonString())).Status.ShouldBe(200);
        body["descripton"] = "typo";

        var replaced = await client.Put($"/policy/{Uri(name)}", body.ToJsonString());

        replaced.Status.ShouldBe(200, replaced.Body?.ToJsonString());
        replaced.Body!["warnings"]!.AsArray().Single()!.GetValue<string>().ShouldContain("did you mean 'description'?");
        var set = await client.Put($"/policy/{Uri(name)}", """{"$set": {"descripton": "typo"}}""");
        set.Status.ShouldBe(400);
        set.Message.ShouldContain("descripton");
    }

    [Fact]
    public async Task An_executor_created_with_a_misspelt_field_is_warned_of()
    {
        var id = Unique("exec");
        var created = await client.Post("/executor", new JsonObject
        {
            ["executor_id"] = id,
            ["executor_host_uri"] = "http://127.0.0.1:19999",
            ["executor_stauts"] = "healthy",
        }.ToJsonString());

        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        created.Body!["warnings"]!.AsArray().Single()!.GetValue<string>()
            .ShouldBe("'executor_stauts' is not a field of an executor and was not stored; did you mean 'executor_status'?");
    }

    [Fact]
    public async Task An_execute_policy_call_with_a_misspelt_field_runs_and_warns_that_it_was_ignored()
    {
        var uri = await server.RegisterPolicyAsync(Unique("exec_typo"), GridServer.EchoPolicy);

        var answer = await client.Post("/executor/local/execute_policy", new JsonObject
        {
            ["policy_rule_uri"] = uri,
            ["input_data"] = new JsonObject { ["x"] = 1 },
            ["paramters"] = new JsonObject { ["mode"] = "strict" },
        }.ToJsonString());

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Body!["warnings"]!.AsArray().Single()!.GetValue<string>()
            .ShouldBe("'paramters' is not a field of an execute_policy request and was ignored; did you mean 'parameters'?");
        var clean = await client.Post("/executor/local/execute_policy", new JsonObject { ["policy_rule_uri"] = uri, ["input_data"] = new JsonObject() }.ToJsonString());
        clean.Body!.AsObject().ContainsKey("warnings").ShouldBeFalse();
    }

    [Fact]
    public async Task A_call_refused_as_invalid_names_the_fields_it_ignored_as_the_likely_cause()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");

        // "input" (the CLI's --input) for input_data: the refusal said only that input_data was missing.
        var execute = await client.Post("/executor/local/execute_policy",
            $$$"""{"policy_rule_uri": "{{{uri}}}", "input": {"ip": "10.0.0.1"}}""");
        execute.Status.ShouldBe(400);
        execute.Code.ShouldBe("validation_failed");
        execute.Message.ShouldStartWith("input_data: is required (a JSON object); 'input' is not a field of an execute_policy request and was ignored");
        execute.Body!["errors"]!.AsArray().Single()!["path"]!.GetValue<string>().ShouldBe("input_data");

        // Type 2's input_data sent to a job, whose input is "inputs": the refusal said only that inputs.ip was missing.
        var job = await client.Post("/jobs/submit/local",
            $$$"""{"policy_rule_uri": "{{{uri}}}", "input_data": {"ip": "10.0.0.1"}}""");
        job.Status.ShouldBe(400);
        job.Message.ShouldStartWith("inputs.ip: is required; 'input_data' is not a field of a job and was ignored");

        var manage = await client.Post("/executor/local/management",
            $$"""{"policy_rule_uri": "{{uri}}", "acton": "get_state"}""");
        manage.Status.ShouldBe(400);
        manage.Message.ShouldContain("'acton' is not a field of a management request and was ignored; did you mean 'action'?");

        // A refusal of a body with only known fields is as it was.
        var clean = await client.Post("/executor/local/execute_policy", $$"""{"policy_rule_uri": "{{uri}}"}""");
        clean.Message.ShouldBe("input_data: is required (a JSON object)");
    }

    [Fact]
    public async Task A_template_key_that_checks_nothing_is_stored_as_written_and_warned_of_where_it_is_written()
    {
        var name = Unique("template");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["policy_input_schema"] = JsonNode.Parse("""
            {"ip": {"type": "string", "requird": true, "maxLength": 15, "example": "10.0.0.1"}, "port": {"type": "integer", "pattern": "^8"}}
            """);

        var created = await client.Post("/policy", body.ToJsonString());

        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        created.Data!["policy_input_schema"]!["ip"]!["requird"]!.GetValue<bool>().ShouldBeTrue();
        created.Body!["warnings"]!.AsArray().Select(w => w!.GetValue<string>()).ShouldBe([
            "'policy_input_schema.ip.requird' is not a template keyword and checks nothing; did you mean 'required'?",
            "'policy_input_schema.ip.maxLength' is not a template keyword and checks nothing; did you mean 'max_length'?",
            "'policy_input_schema.port.pattern' checks nothing: pattern is only checked on strings, and the type is \"integer\"",
        ]);

        // An update that leaves the templates alone says nothing of them; one that writes a command's schema is checked.
        var other = await client.Put($"/policy/{Uri(name)}", """{"$set": {"description": "unrelated"}}""");
        other.Body!.AsObject().ContainsKey("warnings").ShouldBeFalse();
        var command = await client.Put($"/policy/{Uri(name)}",
            """{"$set": {"management_commands_schema": [{"name": "pick", "schema": {"mode": {"type": "string", "choices": [1, 2]}}}]}}""");
        command.Status.ShouldBe(200, command.Body?.ToJsonString());
        command.Body!["warnings"]!.AsArray().Single()!.GetValue<string>()
            .ShouldBe("'management_commands_schema[0].schema.mode.choices' refuses every value: no choice is a string, as the type \"string\" asks");
    }

    [Fact]
    public async Task A_call_overriding_a_misspelt_template_key_runs_and_warns_with_the_key_meant()
    {
        const string withManagement = """
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    self.parameters = parameters
                def eval(self, parameters, input_data, context):
                    return {"limit": parameters.get("limit")}
                def management(self, action, data):
                    return {"limit": self.parameters.get("limit")}
            """;
        var uri = await server.RegisterPolicyAsync(Unique("override_typo"), withManagement,
            JsonNode.Parse("""{"limit": {"type": "integer"}, "window_seconds": {"type": "number"}}""")!.AsObject(),
            JsonNode.Parse("""{"limit": 5, "window_seconds": 60}""")!.AsObject());

        // The stored limit ran, and nothing said the override went nowhere.
        var answer = await client.Post("/executor/local/execute_policy",
            $$$"""{"policy_rule_uri": "{{{uri}}}", "input_data": {}, "parameters": {"limitt": 1, "windowSeconds": 2, "trace_id": "t-1"}}""");

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["limit"]!.GetValue<int>().ShouldBe(5);
        answer.Body!["warnings"]!.AsArray().Select(w => w!.GetValue<string>()).ShouldBe([
            "'parameters.limitt' is not in the policy's policy_parameters_schema, so the policy may read nothing by that name; did you mean 'parameters.limit'?",
            "'parameters.windowSeconds' is not in the policy's policy_parameters_schema, so the policy may read nothing by that name; did you mean 'parameters.window_seconds'?",
        ]);
        var management = await client.Post("/executor/local/management",
            $$$"""{"policy_rule_uri": "{{{uri}}}", "action": "any", "parameters": {"limt": 1}}""");
        management.Status.ShouldBe(200, management.Body?.ToJsonString());
        management.Body!["warnings"]!.AsArray().Single()!.GetValue<string>().ShouldContain("did you mean 'parameters.limit'?");
        var exact = await client.Post("/executor/local/execute_policy", $$$"""{"policy_rule_uri": "{{{uri}}}", "input_data": {}, "parameters": {"limit": 1}}""");
        exact.Body!.AsObject().ContainsKey("warnings").ShouldBeFalse();
    }

    [Theory]
    [InlineData("policy_paramters", "policy_parameters")]
    [InlineData("policySettings", "policy_settings")]
    [InlineData("RELEASE-TAG", "release_tag")]
    [InlineData("tgas", "tags")]
    [InlineData("nmae", "name")]
    [InlineData("x", null)]
    [InlineData("owner", null)]
    [InlineData("labels", null)]
    public void The_field_meant_is_one_slip_away_or_none(string given, string? meant) =>
        IgnoredFields.Closest(given, ["name", "version", "release_tag", "tags", "policy_settings", "policy_parameters", "description", "metadata"]).ShouldBe(meant);
}
