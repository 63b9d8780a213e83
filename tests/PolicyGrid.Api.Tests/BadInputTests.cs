using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// Inputs a fuzzer found answered with 500: each is the caller's mistake, so it is a 400 whose message
/// names what is wrong, and the server goes on serving.
/// </summary>
public sealed class BadInputTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    private async Task<Answer> PostBytes(string path, byte[] body, string contentType = "application/json")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        return await client.Exchange(request);
    }

    private static void ShouldBeBadRequest(Answer answer, params string[] phrases)
    {
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Success.ShouldBe(false);
        answer.Code.ShouldBe("bad_request");
        foreach (var phrase in phrases) answer.Message.ShouldContain(phrase, Case.Insensitive);
    }

    private async Task<string> CreatePolicyAsync()
    {
        var name = Unique("bad_input");
        var created = await client.Post("/policy", IpAllowlist(name, await server.StoreBundleAsync()).ToJsonString());
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        return PolicyDocuments.Uri(name);
    }

    private async Task ShouldStillServe()
    {
        var answer = await client.Post("/policy/query", "{}");
        answer.Status.ShouldBe(200);
    }

    [Theory]
    [InlineData("/policy")]
    [InlineData("/policy/query")]
    [InlineData("/executor/query")]
    [InlineData("/jobs/query")]
    [InlineData("/function/call_function/anything")]
    public async Task A_string_that_is_not_utf8_is_a_400_naming_where_it_sits(string path)
    {
        var body = Encoding.Latin1.GetBytes("{\"name\": {\"x\": [\"ok\", \"\xff\xfe\"]}}");
        ShouldBeBadRequest(await PostBytes(path, body), "$.name.x[1]", "not valid UTF-8");
        await ShouldStillServe();
    }

    [Fact]
    public async Task A_property_name_that_is_not_utf8_is_a_400_naming_its_object()
    {
        var body = Encoding.Latin1.GetBytes("{\"policy_rule_uri\": \"a:1-b\", \"input_data\": {\"\xff\": 1}}");
        ShouldBeBadRequest(await PostBytes("/executor/local/execute_policy", body), "property name in $.input_data", "not valid UTF-8");
        await ShouldStillServe();
    }

    [Theory]
    [InlineData("/policy/query", "{\"a\":\"\\ud800\"}", "$.a")]
    [InlineData("/policy/query", "{\"a\":\"\\udc00\\ud800\"}", "$.a")]
    [InlineData("/executor/local/execute_policy", "{\"policy_rule_uri\": \"a:1-b\", \"input_data\": {\"x\": \"\\ud83d\"}}", "$.input_data.x")]
    [InlineData("/executor/local/execute_policy", "{\"policy_rule_uri\": \"a:1-b\", \"input_data\": {\"\\ud83d\": 1}}", "property name in $.input_data")]
    [InlineData("/function/call_function/anything", "{\"input_data\": {\"\\udc00\": 1, \"\\udc01\": 2}}", "property name in $.input_data")]
    public async Task A_lone_surrogate_escape_is_a_400_naming_where_it_sits(string path, string json, string where)
    {
        ShouldBeBadRequest(await client.Post(path, json), where, "lone surrogate");
        await ShouldStillServe();
    }

    private static readonly byte[] Utf8Bom = [0xEF, 0xBB, 0xBF];

    [Fact]
    public async Task A_body_starting_with_a_utf8_byte_order_mark_is_read_as_the_json_after_it()
    {
        var id = Unique("bom");
        var created = await PostBytes("/executor", [.. Utf8Bom, .. Encoding.UTF8.GetBytes($$"""{"executor_id": "{{id}}", "executor_host_uri": "http://10.3.3.3:9000"}""")]);
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        created.Data!["executor_id"]!.GetValue<string>().ShouldBe(id);

        var query = await PostBytes("/executor/query", [.. Utf8Bom, .. Encoding.UTF8.GetBytes($$"""{"executor_id": "{{id}}"}""")]);
        query.Status.ShouldBe(200, query.Body?.ToJsonString());
        query.Data!.AsArray().Count.ShouldBe(1);

        // A mark and nothing else is an empty body: a query matches everything, a create says the body is empty.
        (await PostBytes("/executor/query", Utf8Bom)).Status.ShouldBe(200);
        ShouldBeBadRequest(await PostBytes("/executor", Utf8Bom), "request body is empty");
    }

    [Fact]
    public async Task A_body_in_utf16_is_a_400_saying_to_send_utf8()
    {
        var utf16 = Encoding.Unicode.GetPreamble().Concat(Encoding.Unicode.GetBytes("{}")).ToArray();
        ShouldBeBadRequest(await PostBytes("/policy/query", utf16), "UTF-16 byte-order mark (FF FE)", "send the JSON as UTF-8");
        await ShouldStillServe();
    }

    [Fact]
    public async Task A_paired_surrogate_escape_is_valid_text()
    {
        var answer = await client.Post("/policy/query", "{\"name\": \"\\ud83d\\ude00\"}");
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
    }

    [Theory]
    [InlineData("99999999999999999999")]
    [InlineData("1e300")]
    public async Task A_job_wait_past_any_timespan_is_held_to_the_maximum_not_a_500(string wait)
    {
        // The job does not exist, so the answer comes at once: what matters is that the wait was read.
        var answer = await client.Get($"/jobs/no-such-job?wait={wait}");
        answer.Status.ShouldBe(404, answer.Body?.ToJsonString());
        answer.Message.ShouldContain("no-such-job");
        await ShouldStillServe();
    }

    [Theory]
    [InlineData("/jobs/no-such-job", "NaN")]
    [InlineData("/jobs/no-such-job", "-1")]
    [InlineData("/jobs/no-such-job", "Infinity")]
    [InlineData("/events/decisions", "NaN")]
    [InlineData("/events/decisions", "1e300")]
    [InlineData("/events/decisions", "-Infinity")]
    public async Task A_wait_that_is_not_a_number_of_seconds_is_a_400_naming_it(string path, string wait)
    {
        var answer = await client.Get($"{path}?wait={wait}");
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Success.ShouldBe(false);
        answer.Message.ShouldContain("wait");
        answer.Message.ShouldContain("number of seconds");
        await ShouldStillServe();
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.zip\"\r\n\r\nPK")]
    public async Task A_multipart_bundle_body_that_ends_early_is_a_400_naming_the_problem(string body)
    {
        var answer = await PostBytes("/bundles", Encoding.ASCII.GetBytes(body), "multipart/form-data; boundary=x");
        ShouldBeBadRequest(answer, "multipart body", "--x--");
        await ShouldStillServe();
    }

    [Theory]
    [InlineData("/policy/query", ",", "empty field")]
    [InlineData("/policy/query", "name:asc,", "empty field")]
    [InlineData("/policy/query", ":desc", "empty field")]
    [InlineData("/policy/query", "name%00:asc", "control character")]
    [InlineData("/jobs/query", ",", "empty field")]
    [InlineData("/jobs/query", "name%01", "control character")]
    public async Task A_sort_with_an_empty_field_or_a_control_character_is_a_400_naming_the_sort(string path, string sort, string problem)
    {
        ShouldBeBadRequest(await client.Post($"{path}?sort={sort}", "{}"), "sort", problem);
        await ShouldStillServe();
    }

    [Theory]
    [InlineData("""{"$inc": {"metadata.count": 1e308}}""", "1e308 is out of range")]
    [InlineData("""{"$inc": {"metadata.count": -1e300}}""", "out of range")]
    public async Task An_inc_by_a_number_out_of_range_says_so(string update, string problem)
    {
        var uri = await CreatePolicyAsync();
        ShouldBeBadRequest(await client.Put($"/policy/{uri}", update), "$inc", "metadata.count", problem);
        (await client.Get($"/policy/{uri}")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task An_inc_whose_sum_would_overflow_says_so()
    {
        var uri = await CreatePolicyAsync();
        (await client.Put($"/policy/{uri}", """{"$set": {"metadata.count": 7e28}}""")).Status.ShouldBe(200);
        ShouldBeBadRequest(await client.Put($"/policy/{uri}", """{"$inc": {"metadata.count": 7e28}}"""), "metadata.count", "would overflow");
        var stored = await client.Get($"/policy/{uri}");
        stored.Data!["metadata"]!["count"]!.GetValue<decimal>().ShouldBe(7e28m);
    }

    [Fact]
    public async Task An_inc_of_a_stored_number_beyond_its_range_says_so()
    {
        var uri = await CreatePolicyAsync();
        (await client.Put($"/policy/{uri}", """{"$set": {"metadata.count": 1e300}}""")).Status.ShouldBe(200);
        ShouldBeBadRequest(await client.Put($"/policy/{uri}", """{"$inc": {"metadata.count": 1}}"""), "metadata.count", "holds 1e300", "$set it instead");
    }

    [Theory]
    [InlineData("/executor/local/execute_policy", """{"policy_rule_uri": "a:1-b", "input_data": {"ip": "10.0.0.1", "n": 1e400}}""", "$.input_data.n", "1e400")]
    [InlineData("/function/call_function/anything", """{"ip": "10.0.0.1", "n": [1, -1e400]}""", "$.n[1]", "-1e400")]
    [InlineData("/policy/query", """{"metadata.n": {"$lt": 1e400}}""", "$[\"metadata.n\"][\"$lt\"]", "1e400")]
    [InlineData("/jobs/submit/local", """{"name": "j", "policy_rule_uri": "a:1-b", "inputs": {"n": 2E+999}}""", "$.inputs.n", "2E+999")]
    public async Task A_number_beyond_a_doubles_range_is_a_400_naming_where_it_sits(string path, string json, string where, string number)
    {
        ShouldBeBadRequest(await client.Post(path, json), $"the number at {where} is out of range ({number})", "within ±1.7976931348623157E+308");
        await ShouldStillServe();
    }

    [Fact]
    public async Task A_document_with_a_number_beyond_a_doubles_range_is_refused_and_nothing_changes()
    {
        var name = Unique("huge_number");
        var body = IpAllowlist(name, await server.StoreBundleAsync()).ToJsonString().Replace("\"risk\":3", "\"risk\":1e400", StringComparison.Ordinal);
        ShouldBeBadRequest(await client.Post("/policy", body), "$.metadata.risk", "out of range");
        (await client.Get($"/policy/{PolicyDocuments.Uri(name)}")).Status.ShouldBe(404);

        var uri = await CreatePolicyAsync();
        ShouldBeBadRequest(await client.Put($"/policy/{uri}", """{"$set": {"metadata.n": -1e309}}"""), "$[\"$set\"][\"metadata.n\"]", "out of range (-1e309)");
        (await client.Get($"/policy/{uri}")).Data!["metadata"]!["n"].ShouldBeNull();
        // The largest double is still a number a body may carry.
        (await client.Put($"/policy/{uri}", """{"$set": {"metadata.n": 1.7976931348623157e308}}""")).Status.ShouldBe(200);
        (await client.Get($"/policy/{uri}")).Data!["metadata"]!["n"]!.GetValue<double>().ShouldBe(double.MaxValue);
    }

    [Theory]
    [InlineData("""{"$set": {"description": "x"}, "$unset": {"description": ""}}""", "description", "$unset of 'description' conflicts with $set of 'description'")]
    [InlineData("""{"$set": {"metadata": {"owner": "x"}}, "$inc": {"metadata.risk": 1}}""", "metadata.risk", "$inc of 'metadata.risk' conflicts with $set of 'metadata'")]
    public async Task An_update_changing_one_path_twice_or_a_path_and_its_parent_is_a_400_naming_both_and_changes_nothing(string update, string path, string message)
    {
        var uri = await CreatePolicyAsync();
        var before = (await client.Get($"/policy/{uri}")).Data!;
        var answer = await client.Put($"/policy/{uri}", update);
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain(message);
        answer.Body!["errors"]!.AsArray().Select(e => e!["path"]!.GetValue<string>()).ShouldBe([path]);
        (await client.Get($"/policy/{uri}")).Data!.ToJsonString().ShouldBe(before.ToJsonString());
    }

    [Theory]
    [InlineData("/policy/query", "{\"name\\u0000\": \"x\"}", "filter field 'name\\u0000' holds a control character")]
    [InlineData("/executor/query", """{"executor_metadata.$labels": 1}""", "filter field 'executor_metadata.$labels' has a segment starting with '$'")]
    public async Task A_filter_field_with_a_control_character_or_a_dollar_segment_is_a_400_naming_it(string path, string filter, string message)
    {
        ShouldBeBadRequest(await client.Post(path, filter), message);
        await ShouldStillServe();
    }

    [Fact]
    public async Task A_sort_field_with_a_dollar_segment_is_a_400_naming_it() =>
        ShouldBeBadRequest(await client.Post("/policy/query?sort=metadata.$owner", "{}"), "sort field 'metadata.$owner'");

    private static string Or(int branches, string path) =>
        new JsonObject { ["$or"] = new JsonArray([.. Enumerable.Range(0, branches).Select(i => (JsonNode)new JsonObject { [path] = $"x{i}" })]) }.ToJsonString();

    private static string In(int count, Func<int, JsonNode> value, string op = "$in") =>
        new JsonObject { ["name"] = new JsonObject { [op] = new JsonArray([.. Enumerable.Range(0, count).Select(value)]) } }.ToJsonString();

    [Fact]
    public async Task A_filter_with_more_conditions_than_the_limit_is_a_400_naming_it()
    {
        ShouldBeBadRequest(await client.Post("/policy/query", Or(1000, "name")), "1000 conditions", "at most 256");
        await ShouldStillServe();
    }

    [Fact]
    public async Task A_filter_at_the_condition_limit_on_deep_paths_is_answered()
    {
        var answer = await client.Post("/policy/query", Or(256, "metadata.a.b.c"));
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
    }

    [Theory]
    [InlineData("$in")]
    [InlineData("$nin")]
    [InlineData("$all")]
    public async Task A_list_longer_than_the_limit_is_a_400_naming_it(string op)
    {
        ShouldBeBadRequest(await client.Post("/policy/query", In(20_000, i => $"x{i}", op)), op, "20000 values", "at most 10000");
        await ShouldStillServe();
    }

    [Fact]
    public async Task Long_lists_up_to_the_limit_are_answered_and_still_match()
    {
        var uri = await CreatePolicyAsync();
        var name = uri.Split(':')[0];
        var strings = await client.Post("/policy/query", In(10_000, i => i == 9_999 ? name : $"x{i}"));
        strings.Status.ShouldBe(200, strings.Body?.ToJsonString());
        strings.Data!.AsArray().Select(d => d!["name"]!.GetValue<string>()).ShouldBe([name]);
        var numbers = await client.Post("/policy/query", In(10_000, i => i));
        numbers.Status.ShouldBe(200, numbers.Body?.ToJsonString());
        var excluded = await client.Post("/policy/query", In(10_000, i => i == 0 ? name : $"x{i}", "$nin"));
        excluded.Status.ShouldBe(200, excluded.Body?.ToJsonString());
        excluded.Data!.AsArray().ShouldNotContain(d => d!["name"]!.GetValue<string>() == name);
    }

    [Fact]
    public async Task An_update_path_longer_than_a_document_may_nest_is_a_400_naming_the_limit()
    {
        var uri = await CreatePolicyAsync();
        var path = "metadata." + string.Join('.', Enumerable.Repeat("a", 5000)) + ".b";
        ShouldBeBadRequest(await client.Put($"/policy/{uri}", new JsonObject { ["$set"] = new JsonObject { [path] = 1 } }.ToJsonString()),
            "$set", "5002 segments", $"at most {PolicyGrid.Core.Documents.DocumentDepth.MaxStored}");
        (await client.Get($"/policy/{uri}")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task An_update_that_would_nest_the_document_too_deep_is_a_400_and_the_document_stays_readable()
    {
        var uri = await CreatePolicyAsync();
        JsonNode deep = 1;
        for (var i = 0; i < 25; i++) deep = new JsonObject { ["d"] = deep };
        var path = "metadata." + string.Join('.', Enumerable.Repeat("a", 30));
        var answer = await client.Put($"/policy/{uri}", new JsonObject { ["$set"] = new JsonObject { [path] = deep } }.ToJsonString());
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain($"nests deeper than {PolicyGrid.Core.Documents.DocumentDepth.MaxStored} levels");
        answer.Message!.ShouldContain("metadata.a.a");
        (await client.Get($"/policy/{uri}")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task A_filter_path_longer_than_a_document_may_nest_is_a_400()
    {
        var path = string.Join('.', Enumerable.Repeat("a", 100));
        ShouldBeBadRequest(await client.Post("/policy/query", new JsonObject { [path] = 1 }.ToJsonString()), $"more than {PolicyGrid.Core.Documents.DocumentDepth.MaxStored} segments");
        ShouldBeBadRequest(await client.Post($"/policy/query?sort={path}", "{}"), "sort", $"more than {PolicyGrid.Core.Documents.DocumentDepth.MaxStored} segments");
    }

    [Theory]
    [InlineData("""{"tags": {"$all": [{"$foo": 1}]}}""", "unknown filter operator '$foo'")]
    [InlineData("""{"tags": {"$all": ["net", {"$elemMatch": {"$eq": "x"}}]}}""", "'$elemMatch' cannot appear inside a list")]
    [InlineData("""{"tags": {"$in": [{"$foo": 1}]}}""", "unknown filter operator '$foo'")]
    [InlineData("""{"tags": {"$nin": ["a", {"$gt": 1}]}}""", "'$gt' cannot appear inside a list")]
    [InlineData("""{"tags": {"$elemMatch": {"$foo": 1}}}""", "unknown filter operator '$foo'")]
    [InlineData("""{"tags": {"$elemMatch": {"a": {"$foo": 1}}}}""", "unknown filter operator '$foo'")]
    [InlineData("""{"tags": {"$not": {"$foo": 1}}}""", "unknown filter operator '$foo'")]
    public async Task An_unknown_operator_inside_an_operator_is_a_400_naming_it(string filter, string message)
    {
        ShouldBeBadRequest(await client.Post("/policy/query", filter), message);
        await ShouldStillServe();
    }
}
