using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Tests;

public class PolicyRuleTests
{
    private const string Minimal = """{"name": "ip_allowlist", "version": "1.0", "release_tag": "beta", "code": "bundle://sha256/abc", "type": "python_class_v1"}""";

    private static JsonObject With(string extra)
    {
        var body = J.O(Minimal);
        foreach (var (k, v) in J.O(extra)) body[k] = v?.DeepClone();
        return body;
    }

    [Fact]
    public void A_minimal_body_gets_every_field_filled()
    {
        var json = PolicyRule.FromJson(J.O(Minimal)).ToJson();
        json.Select(p => p.Key).ShouldBe([
            "policy_rule_uri", "name", "version", "release_tag", "metadata", "tags", "code", "code_sha256", "code_type", "type",
            "policy_input_schema", "policy_output_schema", "policy_settings_schema", "policy_parameters_schema",
            "policy_settings", "policy_parameters", "management_commands_schema", "description", "functionality_data",
            "resource_estimates", "status", "created_at", "updated_at"]);
        json.ShouldAllBe(p => p.Value != null);
        json["policy_rule_uri"]!.GetValue<string>().ShouldBe("ip_allowlist:1.0-beta");
        json["status"]!.GetValue<string>().ShouldBe("active");
        json["metadata"]!.ToJsonString().ShouldBe("{}");
        json["management_commands_schema"]!.ToJsonString().ShouldBe("[]");
        json["tags"]!.GetValue<string>().ShouldBe("");
        json["created_at"]!.GetValue<string>().ShouldBe("");
    }

    [Fact]
    public void ToJson_round_trips_through_FromJson()
    {
        var body = With("""
            {"metadata": {"owner": "net"}, "tags": "net,allow", "code_type": "zip", "description": "d",
             "policy_parameters_schema": {"local_allowlist": {"type": "array", "items": {"type": "string"}}},
             "policy_parameters": {"local_allowlist": ["10.0.0.1"]},
             "management_commands_schema": [{"name": "get_state", "description": "state", "schema": {}}],
             "status": "deprecated", "created_at": "2026-11-25T13:00:00.000Z", "updated_at": "2026-11-25T13:00:00.000Z"}
            """);
        var once = PolicyRule.FromJson(body).ToJson();
        PolicyRule.FromJson(once).ToJson().ToJsonString().ShouldBe(once.ToJsonString());
        once["status"]!.GetValue<string>().ShouldBe("deprecated");
    }

    [Fact]
    public void Nulls_count_as_not_given() =>
        PolicyRule.FromJson(With("""{"metadata": null, "status": null, "tags": null}""")).ToJson()["metadata"]!.ToJsonString().ShouldBe("{}");

    [Fact]
    public void Missing_required_fields_are_all_named()
    {
        var e = J.Rejects(() => PolicyRule.FromJson(J.O("{}")));
        e.Code.ShouldBe(ErrorCodes.ValidationFailed);
        e.Paths().ShouldBe(["name", "version", "release_tag", "code", "type"], ignoreOrder: true);
        e.Errors.ShouldAllBe(x => x.Message == "is required");
    }

    [Theory]
    [InlineData("""{"name": 5}""", "name", "must be a string, not a number")]
    [InlineData("""{"name": ""}""", "name", "must not be empty")]
    [InlineData("""{"name": "a:b"}""", "name", "must not contain ':'")]
    [InlineData("""{"name": "a b"}""", "name", "whitespace")]
    [InlineData("""{"version": "1/2"}""", "version", "must not contain '/'")]
    [InlineData("""{"release_tag": "be-ta"}""", "release_tag", "must not contain '-'")]
    [InlineData("""{"release_tag": "b:c"}""", "release_tag", "must not contain ':'")]
    [InlineData("""{"metadata": []}""", "metadata", "must be an object, not an array")]
    [InlineData("""{"tags": 3}""", "tags", "must be a string")]
    [InlineData("""{"tags": ["a", 1]}""", "tags[1]", "must be a string")]
    [InlineData("""{"code_type": {}}""", "code_type", "must be a string")]
    [InlineData("""{"policy_settings": "x"}""", "policy_settings", "must be an object")]
    [InlineData("""{"policy_parameters": [1]}""", "policy_parameters", "must be an object")]
    [InlineData("""{"functionality_data": 1}""", "functionality_data", "must be an object")]
    [InlineData("""{"resource_estimates": true}""", "resource_estimates", "must be an object")]
    [InlineData("""{"description": 1}""", "description", "must be a string")]
    [InlineData("""{"status": "paused"}""", "status", "'paused' is not one of \"active\", \"deprecated\", \"retired\"")]
    [InlineData("""{"status": 1}""", "status", "must be a string")]
    [InlineData("""{"created_at": "yesterday"}""", "created_at", "not an ISO-8601 timestamp")]
    [InlineData("""{"management_commands_schema": {}}""", "management_commands_schema", "must be an array")]
    [InlineData("""{"management_commands_schema": ["get_state"]}""", "management_commands_schema[0]", "must be an object {name, description, schema}")]
    [InlineData("""{"management_commands_schema": [{"description": "x"}]}""", "management_commands_schema[0].name", "is required")]
    [InlineData("""{"management_commands_schema": [{"name": "a", "schema": {"ips": {"type": "list"}}}]}""", "management_commands_schema[0].schema.ips.type", "is not one of")]
    [InlineData("""{"management_commands_schema": [{"name": "a", "read_only": "yes"}]}""", "management_commands_schema[0].read_only", "must be true or false")]
    [InlineData("""{"policy_input_schema": {"ip": {"type": "ipv4"}}}""", "policy_input_schema.ip.type", "is not one of")]
    [InlineData("""{"policy_output_schema": {"allowed": "boolean"}}""", "policy_output_schema.allowed", "must be a spec object")]
    [InlineData("""{"policy_settings_schema": {"u": {"pattern": "("}}}""", "policy_settings_schema.u.pattern", "not a valid regular expression")]
    [InlineData("""{"policy_parameters_schema": []}""", "policy_parameters_schema", "must be an object")]
    [InlineData("""{"policy_rule_uri": "ip_allowlist:2.0-beta"}""", "policy_rule_uri", "disagrees with name, version and release_tag, which make 'ip_allowlist:1.0-beta'")]
    public void Each_bad_field_is_named(string extra, string path, string message)
    {
        var error = J.Rejects(() => PolicyRule.FromJson(With(extra))).Errors.ShouldHaveSingleItem();
        error.Path.ShouldBe(path);
        error.Message.ShouldContain(message);
    }

    [Theory]
    [InlineData("-1", "not -1")]
    [InlineData("0", "not 0")]
    [InlineData("1e-9", "not 1e-9")]
    [InlineData("\"30\"", "not a string")]
    [InlineData("{}", "not an object")]
    public void An_unusable_timeout_estimate_is_named_but_still_reads_as_stored(string timeout, string shown)
    {
        var rule = PolicyRule.FromJson(With($$$"""{"resource_estimates": {"timeout_seconds": {{{timeout}}}}}"""));

        var error = rule.WriteErrors(null).ShouldHaveSingleItem();
        error.Path.ShouldBe("resource_estimates.timeout_seconds");
        error.Message.ShouldContain(shown);
        PolicyRule.TimeoutEstimate(rule.ResourceEstimates).ShouldBeNull();
    }

    [Theory]
    [InlineData("""{}""", null)]
    [InlineData("""{"timeout_seconds": null}""", null)]
    [InlineData("""{"timeout_seconds": 2.5}""", 2.5)]
    [InlineData("""{"timeout_seconds": 1e9}""", 1e9)]
    public void A_usable_timeout_estimate_is_a_deadline(string estimates, double? seconds)
    {
        var rule = PolicyRule.FromJson(With($$$"""{"resource_estimates": {{{estimates}}}}"""));

        rule.WriteErrors(null).ShouldBeEmpty();
        PolicyRule.TimeoutEstimate(rule.ResourceEstimates).ShouldBe(seconds is { } s ? TimeSpan.FromSeconds(s) : null);
    }

    [Theory]
    [InlineData("memory", "512", "\"512Mi\"")] // a bare number is bytes: 512 of them was a pod that never started
    [InlineData("memory", "6291455", "at least 6291456")]
    [InlineData("memory", "1000000000.5", "a whole number")]
    [InlineData("memory", "\"512\"", "\"512Mi\" or \"1Gi\"")]
    [InlineData("memory", "\"512MB\"", "not a string")]
    [InlineData("memory", "\"lots\"", "not a string")]
    [InlineData("memory", "{}", "not an object")]
    [InlineData("memory_mb", "0", "at least 6")]
    [InlineData("memory_mb", "\"512\"", "not a string")]
    [InlineData("cpu", "0", "at least 0.001")]
    [InlineData("cpu", "\"fast\"", "\"500m\"")]
    [InlineData("vcpus", "-2", "not -2")]
    public void A_resource_estimate_kubernetes_cannot_use_is_named_where_written(string key, string value, string said)
    {
        var rule = PolicyRule.FromJson(With($$$"""{"resource_estimates": {"{{{key}}}": {{{value}}}}}"""));

        var error = rule.WriteErrors(null).ShouldHaveSingleItem();
        error.Path.ShouldBe($"resource_estimates.{key}");
        error.Message.ShouldContain(said);
        // Stored so by an older server, it reads, and an update that leaves it alone is not refused for it.
        (rule with { Description = "changed" }).WriteErrors(rule).ShouldBeEmpty();
    }

    [Theory]
    [InlineData("""{"memory": "512Mi", "cpu": "500m"}""")]
    [InlineData("""{"memory": "1Gi", "cpu": 2}""")]
    [InlineData("""{"memory": "1.5G", "vcpus": "0.25"}""")]
    [InlineData("""{"memory": 536870912, "cpu": "1e-3"}""")]
    [InlineData("""{"memory": "6Mi", "memory_mb": 256}""")]
    [InlineData("""{"memory": null, "cpu": null}""")]
    public void Resource_estimates_kubernetes_reads_are_taken(string estimates) =>
        PolicyRule.FromJson(With($$$"""{"resource_estimates": {{{estimates}}}}""")).WriteErrors(null).ShouldBeEmpty();

    [Fact]
    public void Two_management_commands_of_one_name_are_refused_where_written_but_a_stored_pair_reads_and_updates()
    {
        var rule = PolicyRule.FromJson(With("""{"management_commands_schema": [{"name": "reset"}, {"name": "get_state"}, {"name": "reset", "schema": {"n": {"type": "integer"}}}]}"""));

        var error = rule.WriteErrors(null).ShouldHaveSingleItem();
        error.Path.ShouldBe("management_commands_schema[2].name");
        error.Message.ShouldContain("'reset' is already the name of management_commands_schema[0]");
        (rule with { Description = "changed" }).WriteErrors(rule).ShouldBeEmpty();
    }

    [Fact]
    public void A_timeout_estimate_past_what_a_timespan_holds_is_its_largest_value_not_an_overflow() =>
        PolicyRule.TimeoutEstimate(J.O("""{"timeout_seconds": 1e300}""")).ShouldBe(TimeSpan.MaxValue);

    [Fact]
    public void A_matching_uri_is_accepted_also_percent_encoded()
    {
        PolicyRule.FromJson(With("""{"policy_rule_uri": "ip_allowlist:1.0-beta"}""")).PolicyRuleUri.ShouldBe("ip_allowlist:1.0-beta");
        PolicyRule.FromJson(With("""{"policy_rule_uri": "ip_allowlist%3A1.0-beta"}""")).PolicyRuleUri.ShouldBe("ip_allowlist:1.0-beta");
    }

    [Fact]
    public void Versions_may_carry_a_prerelease()
    {
        var rule = PolicyRule.FromJson(With("""{"version": "1.0.0-rc1"}"""));
        rule.PolicyRuleUri.ShouldBe("ip_allowlist:1.0.0-rc1-beta");
        rule.Uri.Version.ShouldBe("1.0.0-rc1");
    }

    [Fact]
    public void A_tag_list_is_stored_comma_separated() =>
        PolicyRule.FromJson(With("""{"tags": ["net", " allow"]}""")).Tags.ShouldBe("net,allow");

    [Fact]
    public void Parameters_are_checked_against_their_template_with_prefixed_paths()
    {
        var e = J.Rejects(() => PolicyRule.FromJson(With("""
            {"policy_parameters_schema": {"local_allowlist": {"type": "array", "items": {"type": "string", "pattern": "^\\d{1,3}(\\.\\d{1,3}){3}$"}}},
             "policy_parameters": {"local_allowlist": ["10.0.0.1", "10.0.0.2", "ten"]},
             "policy_settings_schema": {"remote_url": {"type": "string", "required": true}},
             "policy_settings": {}}
            """)));
        e.Paths().ShouldBe(["policy_settings.remote_url", "policy_parameters.local_allowlist[2]"], ignoreOrder: true);
        e.Message.ShouldContain(@"policy_parameters.local_allowlist[2]: does not match ^\d{1,3}(\.\d{1,3}){3}$");
    }

    [Fact]
    public void A_broken_template_is_reported_without_a_cascade_of_value_errors()
    {
        var e = J.Rejects(() => PolicyRule.FromJson(With("""
            {"policy_settings_schema": {"x": {"type": "wrong", "required": true}}, "policy_settings": {}}
            """)));
        e.Paths().ShouldBe(["policy_settings_schema.x.type"]);
    }

    [Fact]
    public void Management_commands_are_completed()
    {
        var rule = PolicyRule.FromJson(With("""{"management_commands_schema": [{"name": "get_state"}]}"""));
        rule.ManagementCommandsSchema.ToJsonString().ShouldBe("""[{"name":"get_state","description":"","schema":{}}]""");
    }

    [Fact]
    public void Unknown_top_level_fields_are_dropped() =>
        PolicyRule.FromJson(With("""{"_id": "x", "bogus": 1}""")).ToJson().ContainsKey("bogus").ShouldBeFalse();

    [Fact]
    public void The_document_does_not_share_nodes_with_the_body()
    {
        var body = With("""{"metadata": {"a": 1}}""");
        var rule = PolicyRule.FromJson(body);
        body["metadata"]!["a"] = 2;
        rule.Metadata["a"]!.GetValue<int>().ShouldBe(1);
        rule.ToJson()["metadata"]!["a"] = 3;
        rule.Metadata["a"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public void Timestamps_are_set_on_create_and_created_at_kept_on_update()
    {
        var created = PolicyRule.FromJson(J.O(Minimal)).WithTimestamps(null, new DateTimeOffset(2026, 11, 25, 13, 0, 0, TimeSpan.FromHours(2)));
        created.CreatedAt.ShouldBe("2026-11-25T11:00:00.000Z");
        created.UpdatedAt.ShouldBe("2026-11-25T11:00:00.000Z");
        var updated = PolicyRule.FromJson(J.O(Minimal)).WithTimestamps(created, new DateTimeOffset(2026, 11, 26, 0, 0, 0, TimeSpan.Zero));
        updated.CreatedAt.ShouldBe("2026-11-25T11:00:00.000Z");
        updated.UpdatedAt.ShouldBe("2026-11-26T00:00:00.000Z");
    }

    [Fact]
    public void Retired_and_deprecated_are_visible_as_properties()
    {
        PolicyRule.FromJson(With("""{"status": "retired"}""")).IsRetired.ShouldBeTrue();
        PolicyRule.FromJson(With("""{"status": "deprecated"}""")).IsDeprecated.ShouldBeTrue();
        PolicyRule.FromJson(J.O(Minimal)).IsRetired.ShouldBeFalse();
    }

    [Fact]
    public void Redacted_json_hides_secret_parameters()
    {
        var rule = PolicyRule.FromJson(With("""{"policy_parameters_schema": {"key": {"type": "string", "secret": true}}, "policy_parameters": {"key": "s3cr3t"}}"""));
        rule.ToRedactedJson()["policy_parameters"]!["key"]!.GetValue<string>().ShouldBe("***");
        rule.PolicyParameters["key"]!.GetValue<string>().ShouldBe("s3cr3t");
    }

    [Theory]
    [InlineData("https://example.org/p.zip", "", "")]
    [InlineData("https://example.org/p.zip", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("https://example.org/p.zip#sha256=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")]
    public void Code_sha256_is_kept_lowercase_beside_code_which_stays_as_written(string code, string given, string stored)
    {
        var rule = PolicyRule.FromJson(With($$"""{"code": "{{code}}", "code_sha256": "{{given}}"}"""));
        rule.Code.ShouldBe(code);
        rule.ToJson()["code_sha256"]!.GetValue<string>().ShouldBe(stored);
    }

    [Theory]
    [InlineData("https://example.org/p.zip", "not-a-hash", "must be a sha256")]
    [InlineData("https://example.org/p.zip#sha256=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "pins sha256 bbbb")]
    [InlineData("bundle://sha256/cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "pins sha256 cccc")]
    public void A_code_sha256_that_is_not_a_hash_or_disagrees_with_the_codes_own_pin_is_refused(string code, string given, string message)
    {
        var error = J.Rejects(() => PolicyRule.FromJson(With($$"""{"code": "{{code}}", "code_sha256": "{{given}}"}"""))).Errors.ShouldHaveSingleItem();
        error.Path.ShouldBe("code_sha256");
        error.Message.ShouldContain(message);
    }
}

public class PolicyOverrideTests
{
    private static readonly PolicyGrid.Core.Documents.PolicyRule Rule = PolicyGrid.Core.Documents.PolicyRule.FromJson(J.O("""
        {"name": "ip_allowlist", "version": "1.0", "release_tag": "beta", "code": "c", "type": "python_class_v1",
         "policy_settings_schema": {"remote_url": {"type": "string"}, "timeout": {"type": "number", "max": 10}},
         "policy_settings": {"remote_url": "http://a", "timeout": 5},
         "policy_parameters_schema": {"local_allowlist": {"type": "array", "items": {"type": "string", "pattern": "^\\d+\\.\\d+\\.\\d+\\.\\d+$"}}},
         "policy_parameters": {"local_allowlist": ["10.0.0.1"]},
         "policy_input_schema": {"ip": {"type": "string", "required": true}}}
        """));

    [Fact]
    public void Given_keys_win_and_the_others_are_kept()
    {
        var run = Rule.WithOverrides(J.O("""{"timeout": 2}"""), J.O("""{"local_allowlist": ["10.9.9.9"], "extra": 1}"""));
        run.PolicySettings.ToJsonString().ShouldBe("""{"remote_url":"http://a","timeout":2}""");
        run.PolicyParameters.ToJsonString().ShouldBe("""{"local_allowlist":["10.9.9.9"],"extra":1}""");
        Rule.PolicySettings["timeout"]!.GetValue<int>().ShouldBe(5);
    }

    [Fact]
    public void No_overrides_leave_the_policy_as_stored() => Rule.WithOverrides(null, null).ShouldBeSameAs(Rule);

    [Fact]
    public void Overrides_are_validated_naming_the_call_fields()
    {
        var e = J.Rejects(() => Rule.WithOverrides(J.O("""{"timeout": 11}"""), J.O("""{"local_allowlist": ["10.0.0.1", "x"]}""")));
        e.Paths().ShouldBe(["settings.timeout", "parameters.local_allowlist[1]"]);
    }

    [Fact]
    public void Input_is_checked_against_the_input_template()
    {
        Rule.EnsureValidInput(J.O("""{"ip": "10.0.0.1"}"""));
        J.Rejects(() => Rule.EnsureValidInput(J.O("{}"))).Paths().ShouldBe(["input_data.ip"]);
        J.Rejects(() => Rule.EnsureValidInput(J.N("\"10.0.0.1\""))).Errors.Single().ToString().ShouldBe("input_data: must be an object, not a string");
    }
}
