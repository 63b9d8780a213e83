using PolicyGrid.Core.Documents;

namespace PolicyGrid.Core.Tests;

public class UpdateEngineTests
{
    private static readonly IReadOnlySet<string> Identity = PolicyRule.IdentityFields;

    private static JsonObject Current() => J.O("""
        {"policy_rule_uri": "ip:1.0-beta", "name": "ip", "version": "1.0", "release_tag": "beta",
         "status": "active", "policy_parameters": {"local_allowlist": ["10.0.0.1"], "limit": 2}, "tags": "a,b",
         "metadata": {}}
        """);

    private static JsonObject Apply(string update) => UpdateEngine.Apply(Current(), J.O(update), Identity);

    [Fact]
    public void Set_replaces_a_dotted_path()
    {
        var result = Apply("""{"$set": {"policy_parameters.local_allowlist": ["10.0.0.2", "10.0.0.3"], "status": "retired"}}""");
        result["policy_parameters"]!["local_allowlist"]!.ToJsonString().ShouldBe("""["10.0.0.2","10.0.0.3"]""");
        result["policy_parameters"]!["limit"]!.GetValue<int>().ShouldBe(2);
        result["status"]!.GetValue<string>().ShouldBe("retired");
    }

    [Theory]
    [InlineData("""{"$set": {"metadata.owner": "a"}, "$unset": {"metadata.owner": ""}}""", "metadata.owner", "$unset of 'metadata.owner' conflicts with $set of 'metadata.owner'")]
    [InlineData("""{"$set": {"metadata": {}}, "$inc": {"metadata.count": 1}}""", "metadata.count", "$inc of 'metadata.count' conflicts with $set of 'metadata'")]
    [InlineData("""{"$push": {"metadata.list.items": 1}, "$unset": {"metadata.list": ""}}""", "metadata.list.items", "$push of 'metadata.list.items' conflicts with $unset of 'metadata.list'")]
    [InlineData("""{"$set": {"metadata.a": 1, "metadata.a.b": 2}}""", "metadata.a.b", "$set of 'metadata.a.b' conflicts with $set of 'metadata.a'")]
    public void Two_changes_to_one_path_or_a_path_and_its_parent_are_a_conflict_naming_both(string update, string path, string message)
    {
        var e = J.Rejects(() => Apply(update));
        e.Paths().ShouldBe([path]);
        e.Message.ShouldContain(message);
        e.Message.ShouldContain("send separate updates");
    }

    [Fact]
    public void Changes_to_sibling_paths_and_paths_that_only_share_a_prefix_of_text_do_not_conflict()
    {
        var result = Apply("""{"$set": {"metadata.a": 1, "metadata.ab": 2}, "$inc": {"metadata.b": 1}, "$unset": {"tags": ""}}""");
        result["metadata"]!.ToJsonString().ShouldBe("""{"a":1,"ab":2,"b":1}""");
        result.ContainsKey("tags").ShouldBeFalse();
    }

    [Fact]
    public void Set_creates_missing_intermediate_objects() =>
        Apply("""{"$set": {"metadata.owner.team": "net"}}""")["metadata"]!.ToJsonString().ShouldBe("""{"owner":{"team":"net"}}""");

    [Fact]
    public void Set_indexes_arrays_with_numeric_segments() =>
        Apply("""{"$set": {"policy_parameters.local_allowlist.0": "1.1.1.1"}}""")["policy_parameters"]!["local_allowlist"]!
            .ToJsonString().ShouldBe("""["1.1.1.1"]""");

    [Fact]
    public void Set_through_a_string_is_a_400_naming_the_blocking_field() =>
        J.Rejects(() => Apply("""{"$set": {"tags.x": 1}}""")).Message.ShouldContain("'tags' is a string, not an object");

    [Fact]
    public void Set_outside_an_array_is_a_400() =>
        J.Rejects(() => Apply("""{"$set": {"policy_parameters.local_allowlist.5": "x"}}""")).Message.ShouldContain("outside the array");

    [Fact]
    public void Unset_removes_a_field_and_ignores_missing_ones()
    {
        var result = Apply("""{"$unset": {"policy_parameters.limit": "", "metadata.nothing.here": ""}}""");
        result["policy_parameters"]!.AsObject().ContainsKey("limit").ShouldBeFalse();
        result["metadata"]!.ToJsonString().ShouldBe("{}");
    }

    [Fact]
    public void Push_appends_and_creates_missing_arrays()
    {
        var result = Apply("""{"$push": {"policy_parameters.local_allowlist": "10.0.0.9", "metadata.history": {"v": 1}}}""");
        result["policy_parameters"]!["local_allowlist"]!.ToJsonString().ShouldBe("""["10.0.0.1","10.0.0.9"]""");
        result["metadata"]!["history"]!.ToJsonString().ShouldBe("""[{"v":1}]""");
    }

    [Fact]
    public void Push_with_each_appends_several() =>
        Apply("""{"$push": {"policy_parameters.local_allowlist": {"$each": ["a", "b"]}}}""")["policy_parameters"]!["local_allowlist"]!
            .ToJsonString().ShouldBe("""["10.0.0.1","a","b"]""");

    [Fact]
    public void Push_onto_a_non_array_is_a_400() =>
        J.Rejects(() => Apply("""{"$push": {"policy_parameters.limit": 1}}""")).Message.ShouldContain("'policy_parameters.limit' is a number, not an array");

    [Fact]
    public void Inc_adds_and_starts_missing_fields_at_the_amount()
    {
        var result = Apply("""{"$inc": {"policy_parameters.limit": 3, "metadata.calls": 1.5}}""");
        result["policy_parameters"]!["limit"]!.GetValue<decimal>().ShouldBe(5m);
        result["metadata"]!["calls"]!.GetValue<decimal>().ShouldBe(1.5m);
    }

    [Fact]
    public void Inc_refuses_a_tiny_number_that_decimal_would_round_to_zero_on_either_side()
    {
        J.Rejects(() => Apply("""{"$inc": {"metadata.weight": 1e-30}}""")).Message.ShouldContain("1e-30 is out of range; $inc adds numbers of 1e-12 to 7.9e28 in size (or 0)");
        var current = Current();
        current["metadata"]!["weight"] = J.N("1e-30");
        J.Rejects(() => UpdateEngine.Apply(current, J.O("""{"$inc": {"metadata.weight": 1}}"""), Identity)).Message.ShouldContain("holds 1e-30, out of the range");
        Apply("""{"$inc": {"metadata.weight": 0}}""")["metadata"]!["weight"]!.GetValue<decimal>().ShouldBe(0m);
    }

    [Fact]
    public void Inc_requires_numbers_on_both_sides()
    {
        J.Rejects(() => Apply("""{"$inc": {"policy_parameters.limit": "1"}}""")).Message.ShouldContain("takes a number, not a string");
        J.Rejects(() => Apply("""{"$inc": {"status": 1}}""")).Message.ShouldContain("'status' is a string, not a number");
    }

    [Fact]
    public void Several_operators_apply_together()
    {
        var result = Apply("""{"$set": {"status": "deprecated"}, "$inc": {"policy_parameters.limit": 1}, "$unset": {"tags": ""}}""");
        result["status"]!.GetValue<string>().ShouldBe("deprecated");
        result["policy_parameters"]!["limit"]!.GetValue<decimal>().ShouldBe(3m);
        result.ContainsKey("tags").ShouldBeFalse();
    }

    [Fact]
    public void The_current_document_is_not_modified()
    {
        var current = Current();
        UpdateEngine.Apply(current, J.O("""{"$set": {"status": "retired"}}"""), Identity);
        current["status"]!.GetValue<string>().ShouldBe("active");
    }

    [Fact]
    public void A_full_replacement_replaces_everything_but_keeps_omitted_identity()
    {
        var result = Apply("""{"code": "bundle://sha256/ab", "type": "python_class_v1", "status": "deprecated"}""");
        result["status"]!.GetValue<string>().ShouldBe("deprecated");
        result.ContainsKey("policy_parameters").ShouldBeFalse();
        result["name"]!.GetValue<string>().ShouldBe("ip");
        result["policy_rule_uri"]!.GetValue<string>().ShouldBe("ip:1.0-beta");
    }

    [Fact]
    public void A_replacement_may_repeat_identity_unchanged() =>
        Apply("""{"name": "ip", "version": "1.0", "release_tag": "beta", "code": "c"}""")["version"]!.GetValue<string>().ShouldBe("1.0");

    [Theory]
    [InlineData("""{"name": "other", "code": "c"}""", "name")]
    [InlineData("""{"version": "2.0"}""", "version")]
    [InlineData("""{"$set": {"release_tag": "prod"}}""", "release_tag")]
    [InlineData("""{"$set": {"policy_rule_uri": "ip:2.0-beta"}}""", "policy_rule_uri")]
    [InlineData("""{"$unset": {"name": ""}}""", "name")]
    public void Changing_an_identity_field_is_a_400_naming_it(string update, string field)
    {
        var e = J.Rejects(() => Apply(update));
        e.Paths().ShouldBe([field]);
        e.Message.ShouldContain("identity field");
    }

    [Fact]
    public void Mixing_operators_and_fields_is_a_400()
    {
        var e = J.Rejects(() => Apply("""{"$set": {"status": "retired"}, "code": "x"}"""));
        e.Code.ShouldBe("bad_request");
        e.Message.ShouldContain("mixes operators ($set) with plain fields (code)");
    }

    [Fact]
    public void An_unknown_operator_is_a_400_naming_it() =>
        J.Rejects(() => Apply("""{"$rename": {"a": "b"}}""")).Message.ShouldContain("unknown update operator '$rename'");

    [Theory]
    [InlineData("""{"$set": 5}""", "$set takes a non-empty object")]
    [InlineData("""{"$set": {}}""", "$set takes a non-empty object")]
    [InlineData("""{"$set": {"a..b": 1}}""", "not a valid dotted path")]
    [InlineData("""{"$set": {"": 1}}""", "not a valid dotted path")]
    [InlineData("""{"$set": {"a.$x": 1}}""", "may not contain operators")]
    [InlineData("""{}""", "the update is empty")]
    [InlineData("""{"$push": {"metadata.h": {"$each": 1}}}""", "$each takes an array")]
    public void Malformed_updates_are_400s(string update, string message) =>
        J.Rejects(() => Apply(update)).Message.ShouldContain(message);

    [Fact]
    public void Updated_documents_are_revalidated_by_FromJson()
    {
        var rule = PolicyRule.FromJson(J.O("""{"name": "ip", "version": "1.0", "release_tag": "beta", "code": "c", "type": "python_class_v1"}"""));
        var updated = UpdateEngine.Apply(rule.ToJson(), J.O("""{"$set": {"status": "gone"}}"""), PolicyRule.IdentityFields);
        J.Rejects(() => PolicyRule.FromJson(updated)).Paths().ShouldBe(["status"]);
    }

    [Fact]
    public void The_typed_apply_protects_identity_and_revalidates()
    {
        var graph = Graph.FromJson(J.O("""
            {"graph_name": "g", "graph_version": "1", "graph_release_tag": "t", "graph_function_ids": ["a", "b"], "graph_connection_data": {"a": ["b"]}}
            """));
        var updated = UpdateEngine.Apply<Graph>(graph.ToJson(), J.O("""{"$set": {"graph_description": "two steps"}}"""));
        updated.GraphDescription.ShouldBe("two steps");
        updated.Id.ShouldBe("g:1-t");
        J.Rejects(() => UpdateEngine.Apply<Graph>(graph.ToJson(), J.O("""{"$set": {"graph_version": "2"}}"""))).Paths().ShouldBe(["graph_version"]);
        J.Rejects(() => UpdateEngine.Apply<Graph>(graph.ToJson(), J.O("""{"$push": {"graph_function_ids": "c"}}"""))).Message.ShouldContain("exactly one sink");
    }

    [Fact]
    public void Each_kind_names_its_collection_and_id()
    {
        Collection<PolicyRule>().ShouldBe("policies");
        Collection<PolicyExecutor>().ShouldBe("executors");
        Collection<FunctionDeployment>().ShouldBe("functions");
        Collection<Graph>().ShouldBe("graphs");
        Collection<Job>().ShouldBe("jobs");
        Job.IdentityFields.ShouldBe(["job_id"]);
        PolicyExecutor.FromJson(J.O("""{"executor_id": "e", "executor_host_uri": "inproc://local"}""")).Id.ShouldBe("e");
    }

    private static string Collection<T>() where T : IDocument<T> => T.Collection;
}
