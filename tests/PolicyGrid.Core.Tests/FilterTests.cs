using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Tests;

public class FilterTests
{
    private static readonly JsonObject[] Docs =
    [
        J.O("""
            {"id": "p1", "name": "ip_allowlist", "version": "1.9", "status": "active", "tags": ["net", "allow"], "score": 10,
             "metadata": {"owner": "net-team", "audience": ["ops", "sec"], "level": 2},
             "rules": [{"kind": "cidr", "weight": 5}, {"kind": "host", "weight": 1}], "scores": [70, 85], "flag": true}
            """),
        J.O("""
            {"id": "p2", "name": "ip_blocklist", "version": "1.10", "status": "deprecated", "tags": ["net"], "score": 20.5,
             "metadata": {"owner": "Sec-Team", "audience": ["sec"]}, "rules": [{"kind": "host", "weight": 9}], "scores": [50], "flag": false}
            """),
        J.O("""
            {"id": "p3", "name": "tmp_scorer", "version": "1.0-rc1", "status": "retired", "tags": [], "score": null,
             "metadata": {}, "rules": [], "scores": []}
            """),
    ];

    private static string[] Match(string filter)
    {
        var node = FilterParser.Parse(J.N(filter));
        return Docs.Where(d => node.Matches(d)).Select(d => d["id"]!.GetValue<string>()).ToArray();
    }

    [Theory]
    [InlineData("{}", "p1,p2,p3")]
    [InlineData("null", "p1,p2,p3")]
    [InlineData("""{"name": "ip_allowlist"}""", "p1")]
    [InlineData("""{"name": {"$eq": "ip_blocklist"}}""", "p2")]
    [InlineData("""{"status": {"$ne": "active"}}""", "p2,p3")]
    [InlineData("""{"metadata.owner": "net-team"}""", "p1")]
    [InlineData("""{"metadata.level": 2.0}""", "p1")]
    [InlineData("""{"tags": "net"}""", "p1,p2")]
    [InlineData("""{"tags": ["net"]}""", "p2")]
    [InlineData("""{"metadata.audience": "sec"}""", "p1,p2")]
    [InlineData("""{"rules.kind": "cidr"}""", "p1")]
    [InlineData("""{"rules.weight": {"$gt": 4}}""", "p1,p2")]
    [InlineData("""{"rules.0.kind": "host"}""", "p2")]
    [InlineData("""{"score": null}""", "p3")]
    [InlineData("""{"missing": null}""", "p1,p2,p3")]
    [InlineData("""{"score": {"$ne": null}}""", "p1,p2")]
    [InlineData("""{"score": {"$gt": 10}}""", "p2")]
    [InlineData("""{"score": {"$gte": 10}}""", "p1,p2")]
    [InlineData("""{"score": {"$lt": 20.5}}""", "p1")]
    [InlineData("""{"score": {"$lte": 20.5}}""", "p1,p2")]
    [InlineData("""{"score": {"$gt": 5, "$lt": 15}}""", "p1")]
    [InlineData("""{"score": {"$gt": "5"}}""", "")]
    [InlineData("""{"name": {"$gt": "ip_b"}}""", "p2,p3")]
    [InlineData("""{"flag": {"$gt": false}}""", "p1")]
    [InlineData("""{"status": {"$in": ["active", "retired"]}}""", "p1,p3")]
    [InlineData("""{"tags": {"$in": ["allow", "x"]}}""", "p1")]
    [InlineData("""{"status": {"$nin": ["active", "retired"]}}""", "p2")]
    [InlineData("""{"name": {"$in": [{"$regex": "^tmp"}]}}""", "p3")]
    [InlineData("""{"name": {"$nin": [{"$regex": "^IP", "$options": "i"}]}}""", "p3")]
    [InlineData("""{"name": {"$regex": "list$"}}""", "p1,p2")]
    [InlineData("""{"name": {"$regex": "allow"}}""", "p1")]
    [InlineData("""{"metadata.owner": {"$regex": "^sec", "$options": "i"}}""", "p2")]
    [InlineData("""{"metadata.owner": {"$regex": "^sec"}}""", "")]
    [InlineData("""{"tags": {"$regex": "^al"}}""", "p1")]
    [InlineData("""{"metadata.level": {"$exists": true}}""", "p1")]
    [InlineData("""{"score": {"$exists": true}}""", "p1,p2,p3")]
    [InlineData("""{"flag": {"$exists": false}}""", "p3")]
    [InlineData("""{"tags": {"$all": ["net", "allow"]}}""", "p1")]
    [InlineData("""{"tags": {"$all": ["net"]}}""", "p1,p2")]
    [InlineData("""{"tags": {"$all": []}}""", "")]
    [InlineData("""{"status": {"$all": ["active"]}}""", "p1")]
    [InlineData("""{"tags": {"$size": 0}}""", "p3")]
    [InlineData("""{"tags": {"$size": 2}}""", "p1")]
    [InlineData("""{"scores": {"$elemMatch": {"$gte": 80, "$lt": 90}}}""", "p1")]
    [InlineData("""{"scores": {"$elemMatch": {"$lt": 60}}}""", "p2")]
    [InlineData("""{"rules": {"$elemMatch": {"kind": "host", "weight": {"$gt": 5}}}}""", "p2")]
    [InlineData("""{"rules": {"$elemMatch": {"kind": "cidr", "weight": 1}}}""", "")]
    [InlineData("""{"rules": {"$elemMatch": {"$or": [{"kind": "cidr"}, {"weight": 9}]}}}""", "p1,p2")]
    [InlineData("""{"name": {"$not": {"$regex": "^ip"}}}""", "p3")]
    [InlineData("""{"score": {"$not": {"$gt": 15}}}""", "p1,p3")]
    [InlineData("""{"scores": {"$elemMatch": {"$not": {"$gte": 60}}}}""", "p2")]
    [InlineData("""{"$or": [{"status": "retired"}, {"score": {"$gt": 15}}]}""", "p2,p3")]
    [InlineData("""{"$and": [{"tags": "net"}, {"status": "active"}]}""", "p1")]
    [InlineData("""{"$and": [{"$or": [{"name": "x"}, {"name": "tmp_scorer"}]}, {"status": {"$in": ["retired"]}}]}""", "p3")]
    [InlineData("""{"tags": "net", "status": "deprecated"}""", "p2")]
    [InlineData("""{"metadata": {"owner": "Sec-Team", "audience": ["sec"]}}""", "p2")]
    [InlineData("""{"metadata": {"audience": ["sec"], "owner": "Sec-Team"}}""", "p2")]
    public void Operators_follow_mongo_semantics(string filter, string expected) =>
        string.Join(",", Match(filter)).ShouldBe(expected);

    [Theory]
    [InlineData("""{"version": {"$gte": "1.9"}}""", "p1,p2")]
    [InlineData("""{"version": {"$gt": "1.9"}}""", "p2")]
    [InlineData("""{"version": {"$lt": "1.0"}}""", "p3")]
    [InlineData("""{"version": {"$lte": "1.0-rc1"}}""", "p3")]
    [InlineData("""{"version": {"$gte": "1.0"}}""", "p1,p2")]
    public void Version_fields_compare_as_versions(string filter, string expected) =>
        string.Join(",", Match(filter)).ShouldBe(expected);

    [Fact]
    public void Other_fields_compare_as_plain_text() =>
        // "1.10" < "1.9" as text: ordinary string fields are not treated as versions.
        FilterParser.Parse(J.N("""{"label": {"$gt": "1.9"}}""")).Matches(J.O("""{"label": "1.10"}""")).ShouldBeFalse();

    [Theory]
    [InlineData("""{"version": {"$gt": 1}}""", "filter field 'version' in $gt compares 1, a number")]
    [InlineData("""{"version": 1}""", "filter field 'version' compares 1, a number")]
    [InlineData("""{"version": {"$eq": 1.10}}""", "compares 1.10, a number")]
    [InlineData("""{"version": {"$ne": 2}}""", "filter field 'version' in $ne compares 2")]
    [InlineData("""{"version": {"$in": ["1.0", 2]}}""", "filter field 'version' in $in compares 2, a number")]
    [InlineData("""{"version": {"$nin": [1]}}""", "in $nin compares 1")]
    [InlineData("""{"version": {"$all": [1]}}""", "in $all compares 1")]
    [InlineData("""{"version": {"$not": {"$lte": 1}}}""", "in $lte compares 1")]
    [InlineData("""{"version": true}""", "compares true, a boolean")]
    [InlineData("""{"graph_version": {"$gte": 2}}""", "filter field 'graph_version' in $gte compares 2, a number")]
    [InlineData("""{"$or": [{"name": "x"}, {"$and": [{"version": {"$lt": 3}}]}]}""", "filter field 'version' in $lt compares 3")]
    public void A_number_against_a_version_field_is_a_400_asking_for_a_string(string filter, string message)
    {
        // Stored versions are always strings, so such a filter matched nothing, silently; and reading the number as a
        // version would be a trap (the JSON number 1.10 is 1.1).
        var e = J.Rejects(() => FilterParser.Parse(J.N(filter)));
        e.Code.ShouldBe("bad_request");
        e.Message.ShouldContain(message);
        e.Message.ShouldContain("give it as a string, such as");
    }

    [Theory]
    [InlineData("""{"version": {"$gt": "1"}, "graph_version": {"$in": ["1.0", null]}}""")]
    [InlineData("""{"version": null}""")]
    [InlineData("""{"version": {"$exists": true, "$size": 1, "$regex": "^1"}}""")]
    // Nested *.version fields hold whatever metadata holds, numbers included; so do fields of array elements.
    [InlineData("""{"metadata.version": {"$gt": 1}, "deps.version": 2}""")]
    [InlineData("""{"deps": {"$elemMatch": {"version": {"$gte": 2}}}}""")]
    [InlineData("""{"deps": {"$elemMatch": {"$or": [{"version": 2}]}}}""")]
    public void Strings_on_version_fields_and_numbers_elsewhere_are_accepted(string filter) =>
        Should.NotThrow(() => FilterParser.Parse(J.N(filter)));

    [Theory]
    [InlineData("""{"$gt": 1}""")]
    [InlineData("""{"scores": {"$elemMatch": {"$gt": 1, "subject": "math"}}}""")]
    [InlineData("""{"scores": {"$elemMatch": {"$or": [{"$gt": 1}]}}}""")]
    [InlineData("""{"$or": [{"$regex": "^a"}]}""")]
    public void A_field_operator_without_its_field_is_a_400_that_does_not_call_it_unknown(string filter)
    {
        // It said "unknown filter operator '$gt'", of an operator the documentation lists.
        var e = J.Rejects(() => FilterParser.Parse(J.N(filter)));
        e.Message.ShouldNotContain("unknown");
        e.Message.ShouldContain("applies to a field and appears here without one");
    }

    [Theory]
    [InlineData("""{"name": {"$like": "x"}}""", "unknown filter operator '$like'")]
    [InlineData("""{"$nor": [{"a": 1}]}""", "unknown filter operator '$nor'")]
    [InlineData("""{"scores": {"$elemMatch": {"$foo": 1}}}""", "unknown filter operator '$foo'")]
    [InlineData("""{"name": {"$not": {"$bar": 1}}}""", "unknown filter operator '$bar'")]
    public void Unknown_operators_are_400s_naming_them(string filter, string message)
    {
        var e = J.Rejects(() => FilterParser.Parse(J.N(filter)));
        e.Code.ShouldBe("bad_request");
        e.Message.ShouldContain(message);
    }

    [Theory]
    [InlineData("[1]", "filter must be a JSON object")]
    [InlineData("\"name\"", "filter must be a JSON object")]
    [InlineData("""{"status": {"$in": "active"}}""", "status: $in takes an array")]
    [InlineData("""{"status": {"$nin": 1}}""", "status: $nin takes an array")]
    [InlineData("""{"tags": {"$all": "net"}}""", "tags: $all takes an array")]
    [InlineData("""{"a": {"$exists": "yes"}}""", "a: $exists takes true or false")]
    [InlineData("""{"tags": {"$size": -1}}""", "a non-negative integer")]
    [InlineData("""{"tags": {"$size": 1.5}}""", "a non-negative integer")]
    [InlineData("""{"tags": {"$size": "2"}}""", "a non-negative integer")]
    [InlineData("""{"tags": {"$size": 1e20}}""", "tags: $size takes a non-negative integer up to 2147483647: 1e20 is out of range")]
    [InlineData("""{"tags": {"$size": 1e-30}}""", "a non-negative integer")]
    [InlineData("""{"name": {"$regex": 5}}""", "name: $regex takes a string")]
    [InlineData("""{"name": {"$regex": "("}}""", "is not a valid pattern")]
    [InlineData("""{"name": {"$regex": "^[[:alpha:]]+$"}}""", "name: $regex: '[:alpha:]' is a POSIX bracket expression")]
    [InlineData("""{"name": {"$regex": "[[:digit:]_]"}}""", "write [0-9]")]
    [InlineData("""{"name": {"$regex": "[:alpha:]"}}""", "'[:alpha:]' is a POSIX bracket expression")]
    [InlineData("""{"name": {"$regex": "[[=e=]]"}}""", "'[=e=]' is a POSIX bracket expression")]
    [InlineData("""{"name": {"$in": [{"$regex": "[[:upper:]]"}]}}""", "name: $in: $regex: '[:upper:]' is a POSIX bracket expression")]
    [InlineData("""{"name": {"$not": {"$regex": "[[:space:]]"}}}""", "'[:space:]' is a POSIX bracket expression")]
    [InlineData("""{"name": {"$regex": "a", "$options": "q"}}""", "unknown regex option 'q'")]
    [InlineData("""{"name": {"$options": "i"}}""", "$options needs a $regex")]
    [InlineData("""{"name": {"$in": [{"$regex": 5}]}}""", "$regex takes a string")]
    [InlineData("""{"name": {"$in": [{"$regex": "("}]}}""", "is not a valid pattern")]
    [InlineData("""{"name": {"$in": [{"$regex": "a", "x": 1}]}}""", "only $regex and $options")]
    [InlineData("""{"score": {"$gt": {}}}""", "score: $gt takes a number, string or boolean")]
    [InlineData("""{"score": {"$lte": [1]}}""", "score: $lte takes a number, string or boolean")]
    [InlineData("""{"score": {"$gte": null}}""", "score: $gte takes a number, string or boolean")]
    [InlineData("""{"scores": {"$elemMatch": 5}}""", "$elemMatch takes a non-empty object")]
    [InlineData("""{"scores": {"$elemMatch": {}}}""", "$elemMatch takes a non-empty object")]
    [InlineData("""{"name": {"$not": "x"}}""", "$not takes an operator object")]
    [InlineData("""{"name": {"$not": {"a": 1}}}""", "$not takes an operator object")]
    [InlineData("""{"$or": {"a": 1}}""", "$or takes a non-empty array")]
    [InlineData("""{"$and": []}""", "$and takes a non-empty array")]
    [InlineData("""{"$or": [1]}""", "$or takes a non-empty array")]
    [InlineData("""{"a..b": 1}""", "not a valid dotted path")]
    [InlineData("""{"": 1}""", "not a valid dotted path")]
    [InlineData("""{"name": {"$eq": "x", "plain": 1}}""", "mixes operators and plain fields")]
    public void Mistyped_operands_are_400s(string filter, string message)
    {
        var e = J.Rejects(() => FilterParser.Parse(J.N(filter)));
        e.Message.ShouldContain(message);
    }

    [Theory]
    [InlineData("""{"name": {"$regex": "\\[:alpha:]"}}""", "[:alpha:]", true)]
    [InlineData("""{"name": {"$regex": "^[a-z:]+$"}}""", "ab:c", true)]
    [InlineData("""{"name": {"$regex": "[:;]"}}""", "a;b", true)]
    public void Brackets_and_colons_that_are_no_posix_class_still_match_as_written(string filter, string name, bool matches) =>
        FilterParser.Parse(J.N(filter)).Matches(new JsonObject { ["name"] = name }).ShouldBe(matches);

    [Fact]
    public void A_catastrophic_regex_is_a_400_not_a_hang()
    {
        var filter = FilterParser.Parse(J.N("""{"name": {"$regex": "^(a+)+$"}}"""));
        var doc = new JsonObject { ["name"] = new string('a', 5000) + "!" };
        J.Rejects(() => filter.Matches(doc)).Message.ShouldContain("took too long");
    }

    [Theory]
    [InlineData("{\"a\\u0000b\": 1}", "filter field 'a\\u0000b' holds a control character")]
    [InlineData("{\"metadata.owner\\u0007\": {\"$eq\": 1}}", "filter field 'metadata.owner\\u0007' holds a control character")]
    [InlineData("""{"a.$b": 1}""", "filter field 'a.$b' has a segment starting with '$' ('$b')")]
    [InlineData("""{"metadata.$eq": "x"}""", "filter field 'metadata.$eq'")]
    [InlineData("""{"$or": [{"ok": 1}, {"a.$b.c": 1}]}""", "filter field 'a.$b.c'")]
    [InlineData("""{"rules": {"$elemMatch": {"kind.$x": 1}}}""", "filter field 'kind.$x'")]
    public void A_field_name_with_a_control_character_or_a_dollar_segment_is_a_400_naming_it(string filter, string message) =>
        J.Rejects(() => FilterParser.Parse(J.N(filter))).Message.ShouldContain(message);

    [Fact]
    public void Field_names_holding_a_dollar_inside_a_segment_are_fields()
    {
        var filter = FilterParser.Parse(J.N("""{"metadata.price$": 3}"""));
        filter.Matches(J.O("""{"metadata": {"price$": 3}}""")).ShouldBeTrue();
    }

    /// <summary>256 regexes that each stay well under their own timeout on a long value, but add up to seconds.</summary>
    private static FilterNode ManySlowRegexes() => FilterParser.Parse(new JsonObject
    {
        ["$or"] = new JsonArray([.. Enumerable.Range(100, FilterParser.MaxConditions)
            .Select(n => (JsonNode)new JsonObject { ["description"] = new JsonObject { ["$regex"] = $"a{{1,{n}}}b" } })]),
    });

    [Fact]
    public void A_filter_past_its_time_budget_is_a_400_naming_the_budget()
    {
        var doc = new JsonObject { ["description"] = new string('a', 50_000) };
        var budget = new FilterBudget(TimeSpan.FromMilliseconds(50), CancellationToken.None);
        var e = J.Rejects(() => budget.Matches(ManySlowRegexes(), doc));
        e.Message.ShouldContain("more than 50 ms");
        e.Message.ShouldContain("time budget for one query");
        e.Message.ShouldContain("narrow it");
    }

    [Fact]
    public void The_budget_covers_every_document_of_a_query_together()
    {
        // Each document alone fits in the budget; the query as a whole does not.
        var filter = FilterParser.Parse(J.N("""{"description": {"$regex": "a{1,100}b"}}"""));
        var doc = new JsonObject { ["description"] = new string('a', 20_000) };
        var budget = new FilterBudget(TimeSpan.FromMilliseconds(50), CancellationToken.None);
        J.Rejects(() => { for (var i = 0; i < 10_000; i++) budget.Matches(filter, doc); }).Message.ShouldContain("time budget");
    }

    [Fact]
    public void Evaluation_stops_when_the_caller_cancels()
    {
        using var gone = new CancellationTokenSource();
        gone.Cancel();
        var budget = new FilterBudget(TimeSpan.FromMinutes(1), gone.Token);
        Should.Throw<OperationCanceledException>(() => budget.Matches(ManySlowRegexes(), new JsonObject { ["description"] = "a" }));
    }

    [Fact]
    public void A_filter_within_its_budget_answers_as_before()
    {
        var budget = new FilterBudget(TimeSpan.FromSeconds(10), CancellationToken.None);
        var filter = FilterParser.Parse(J.N("""{"name": {"$regex": "^ip_"}, "tags": {"$in": [{"$regex": "^al"}]}}"""));
        Docs.Where(d => budget.Matches(filter, d)).Select(d => d["id"]!.GetValue<string>()).ShouldBe(["p1"]);
    }

    [Fact]
    public void The_parsed_tree_is_data_adapters_can_read()
    {
        var node = FilterParser.Parse(J.N("""{"name": "x", "version": {"$gte": "1.0"}}""")).ShouldBeOfType<AndFilter>();
        node.Children.Count.ShouldBe(2);
        var version = node.Children[1].ShouldBeOfType<FieldFilter>();
        version.Path.ShouldBe("version");
        version.Operator.ShouldBe(FieldOperator.Gte);
        version.Operand!.GetValue<string>().ShouldBe("1.0");
    }

    [Fact]
    public void Numbers_nested_in_literals_compare_by_value() =>
        FilterParser.Parse(J.N("""{"limits": {"rate": 1}}""")).Matches(J.O("""{"limits": {"rate": 1.0}}""")).ShouldBeTrue();

    private static readonly JsonObject[] Numbers =
    [
        J.O("""{"id": "big", "n": 1e30, "limits": {"cap": 1E+30}}"""),
        J.O("""{"id": "neg", "n": -1e30}"""),
        J.O("""{"id": "five", "n": 5}"""),
        J.O("""{"id": "tenth", "n": 0.1000000000000000001}"""),
        J.O("""{"id": "list", "n": [2, 3e35]}"""),
        // Built in code, as stored documents may be: an int and a double rather than parsed JSON text.
        new JsonObject { ["id"] = "int", ["n"] = 7 },
        new JsonObject { ["id"] = "double", ["n"] = 2e30 },
    ];

    [Theory]
    [InlineData("""{"n": {"$gt": 1e29}}""", "big,list,double")]
    [InlineData("""{"n": {"$gte": 1e30}}""", "big,list,double")]
    [InlineData("""{"n": {"$gt": 1e30}}""", "list,double")]
    [InlineData("""{"n": {"$lt": 1e30}}""", "neg,five,tenth,list,int")]
    [InlineData("""{"n": {"$lte": 1e30}}""", "big,neg,five,tenth,list,int")]
    [InlineData("""{"n": {"$lt": -1e30}}""", "")]
    [InlineData("""{"n": {"$lte": -1e30}}""", "neg")]
    [InlineData("""{"n": {"$lt": -1e29}}""", "neg")]
    [InlineData("""{"n": {"$gt": -1e30}}""", "big,five,tenth,list,int,double")]
    [InlineData("""{"n": {"$gt": 5}}""", "big,list,int,double")]
    [InlineData("""{"n": {"$lt": 5}}""", "neg,tenth,list")]
    // Each condition may hold for a different element of an array (Mongo).
    [InlineData("""{"n": {"$gt": 6, "$lt": 1e31}}""", "big,list,int,double")]
    [InlineData("""{"n": 1e30}""", "big")]
    [InlineData("""{"n": {"$eq": 1000000000000000000000000000000}}""", "big")]
    [InlineData("""{"n": 2E+30}""", "double")]
    [InlineData("""{"n": 3e35}""", "list")]
    [InlineData("""{"n": -1e30}""", "neg")]
    [InlineData("""{"n": {"$ne": 1e30}}""", "neg,five,tenth,list,int,double")]
    [InlineData("""{"n": {"$in": [1e30, 5]}}""", "big,five")]
    [InlineData("""{"n": {"$in": [-1e30, 3e35, 7]}}""", "neg,list,int")]
    [InlineData("""{"n": {"$nin": [1e30, -1e30, 2e30]}}""", "five,tenth,list,int")]
    [InlineData("""{"n": {"$all": [3e35, 2]}}""", "list")]
    [InlineData("""{"n": {"$elemMatch": {"$gt": 1e35}}}""", "list")]
    [InlineData("""{"n": {"$not": {"$gt": 1e29}}}""", "neg,five,tenth,int")]
    [InlineData("""{"limits": {"cap": 1e30}}""", "big")]
    [InlineData("""{"limits.cap": {"$gte": 1e30, "$lte": 1e30}}""", "big")]
    // Numbers that fit a decimal still compare exactly, although as doubles they are equal.
    [InlineData("""{"n": {"$gt": 0.1}}""", "big,five,tenth,list,int,double")]
    [InlineData("""{"n": 0.1}""", "")]
    [InlineData("""{"n": 0.1000000000000000001}""", "tenth")]
    public void Numbers_beyond_decimal_range_compare_by_value(string filter, string expected)
    {
        var node = FilterParser.Parse(J.N(filter));
        string.Join(",", Numbers.Where(d => node.Matches(d)).Select(d => d["id"]!.GetValue<string>())).ShouldBe(expected);
    }

    private static readonly JsonObject[] Tiny =
    [
        J.O("""{"id": "zero", "n": 0}"""),
        J.O("""{"id": "tiny", "n": 1e-30}"""),
        J.O("""{"id": "negtiny", "n": -1e-30}"""),
        J.O("""{"id": "e28", "n": 1e-28}"""),
        J.O("""{"id": "e28plus", "n": 1.4e-28}"""),
        J.O("""{"id": "tenth", "n": 0.1}"""),
        // Built in code from a double, as stored documents may be.
        new JsonObject { ["id"] = "double", ["n"] = 3e-20 },
    ];

    [Theory]
    [InlineData("""{"n": {"$gt": 0}}""", "tiny,e28,e28plus,tenth,double")]
    [InlineData("""{"n": {"$lt": 0}}""", "negtiny")]
    [InlineData("""{"n": 0}""", "zero")]
    [InlineData("""{"n": {"$ne": 0}}""", "tiny,negtiny,e28,e28plus,tenth,double")]
    [InlineData("""{"n": {"$gt": 1e-30}}""", "e28,e28plus,tenth,double")]
    [InlineData("""{"n": {"$gte": 1e-30}}""", "tiny,e28,e28plus,tenth,double")]
    [InlineData("""{"n": {"$lt": 1e-30}}""", "zero,negtiny")]
    [InlineData("""{"n": {"$gt": 1e-28}}""", "e28plus,tenth,double")]
    [InlineData("""{"n": {"$lt": 1.4e-28}}""", "zero,tiny,negtiny,e28")]
    [InlineData("""{"n": 1e-30}""", "tiny")]
    [InlineData("""{"n": 1E-30}""", "tiny")]
    [InlineData("""{"n": 0.000000000000000000000000000001}""", "tiny")]
    [InlineData("""{"n": 1.4e-28}""", "e28plus")]
    [InlineData("""{"n": 3e-20}""", "double")]
    [InlineData("""{"n": {"$in": [1e-30, 7]}}""", "tiny")]
    [InlineData("""{"n": {"$nin": [1e-30, 0]}}""", "negtiny,e28,e28plus,tenth,double")]
    [InlineData("""{"n": {"$gt": -1e-30, "$lt": 1e-30}}""", "zero")]
    public void Numbers_smaller_than_a_decimal_keeps_compare_by_value(string filter, string expected)
    {
        var node = FilterParser.Parse(J.N(filter));
        string.Join(",", Tiny.Where(d => node.Matches(d)).Select(d => d["id"]!.GetValue<string>())).ShouldBe(expected);
    }

    [Theory]
    // Decimals still compare exactly where doubles would round them together.
    [InlineData("0.30000000000000004", "0.3", 1)]
    [InlineData("0.1000000000000000001", "0.1", 1)]
    [InlineData("0.000000000001", "0.0000000000010000000000000001", -1)]
    [InlineData("1e-30", "0", 1)]
    [InlineData("-1e-30", "0", -1)]
    [InlineData("1.4e-28", "1e-28", 1)]
    [InlineData("1e-30", "1E-30", 0)]
    [InlineData("1e-30", "0.000000000000000000000000000001", 0)]
    [InlineData("0", "-0.0", 0)]
    [InlineData("1e-400", "0", 0)] // below the smallest double: zero both ways
    public void Numbers_compare_by_value_at_any_size(string a, string b, int order)
    {
        Math.Sign(JsonValues.CompareNumbers(J.N(a), J.N(b))!.Value).ShouldBe(order);
        Math.Sign(JsonValues.CompareNumbers(J.N(b), J.N(a))!.Value).ShouldBe(-order);
        JsonValues.DeepEquals(J.N(a), J.N(b)).ShouldBe(order == 0);
    }
}

public class JsonValuesTests
{
    [Fact]
    public void Sort_order_puts_missing_first_then_numbers_then_strings()
    {
        JsonNode?[] values = [J.N("\"b\""), J.N("2"), null, J.N("{}"), J.N("[1]"), J.N("true"), J.N("\"a\""), J.N("1.5")];
        var sorted = values.Order(Comparer<JsonNode?>.Create((a, b) => JsonValues.SortCompare(a, b, asVersion: false)))
            .Select(v => v?.ToJsonString() ?? "missing");
        sorted.ShouldBe(["missing", "1.5", "2", "\"a\"", "\"b\"", "{}", "[1]", "true"]);
    }

    [Fact]
    public void Sort_order_puts_numbers_beyond_decimal_range_by_value()
    {
        JsonNode?[] values = [J.N("1e30"), J.N("5"), J.N("-1e30"), JsonValue.Create(7), J.N("1.5"), JsonValue.Create(-2e29), J.N("\"a\"")];
        var sorted = values.Order(Comparer<JsonNode?>.Create((a, b) => JsonValues.SortCompare(a, b, asVersion: false)))
            .Select(v => v!.ToJsonString());
        sorted.ShouldBe(["-1e30", "-2E+29", "1.5", "5", "7", "1e30", "\"a\""]);
    }

    [Fact]
    public void Sort_order_puts_numbers_smaller_than_a_decimal_keeps_by_value()
    {
        JsonNode?[] values = [J.N("0.1"), J.N("1e-12"), J.N("1e-30"), J.N("0"), JsonValue.Create(-2e-40), J.N("1.4e-28"), J.N("1e-28")];
        var sorted = values.Order(Comparer<JsonNode?>.Create((a, b) => JsonValues.SortCompare(a, b, asVersion: false)))
            .Select(v => v!.ToJsonString());
        sorted.ShouldBe(["-2E-40", "0", "1e-30", "1e-28", "1.4e-28", "1e-12", "0.1"]);
    }

    [Fact]
    public void Sorting_versions_uses_version_order() =>
        JsonValues.SortCompare(J.N("\"1.10\""), J.N("\"1.9\""), asVersion: true).ShouldBeGreaterThan(0);

    [Fact]
    public void Mixed_kinds_do_not_compare() => JsonValues.Compare(J.N("1"), J.N("\"1\""), asVersion: false).ShouldBeNull();

    [Theory]
    [InlineData("""{"a":[1,{"b":2}]}""", """{"a":[1.0,{"b":2.00}]}""", true)]
    [InlineData("""{"a":1}""", """{"a":1,"b":2}""", false)]
    [InlineData("""[1,2]""", """[2,1]""", false)]
    [InlineData("\"1\"", "1", false)]
    public void Deep_equality_compares_numbers_by_value(string a, string b, bool equal) =>
        JsonValues.DeepEquals(J.N(a), J.N(b)).ShouldBe(equal);
}
