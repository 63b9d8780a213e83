using System.Text.Json.Nodes;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// If-Match on the writes that honour it (policies, executors, graphs, function removal): a header that is sent
/// is never ignored. Empty or malformed is a 400 naming the header; a list matches when any strong tag is the
/// current revision; a weak tag never matches (RFC 9110 compares strongly), answered as the usual 409.
/// </summary>
public sealed class IfMatchTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    /// <summary>A fresh document of <paramref name="kind"/>: its path and the ETag its create answered.</summary>
    private async Task<(string Path, string ETag)> CreateAsync(string kind)
    {
        var name = Unique("ifm");
        var (path, created) = kind switch
        {
            "executor" => ($"/executor/{name}", await client.Post("/executor", $$"""{"executor_id": "{{name}}", "executor_host_uri": "http://10.9.9.9:9000"}""")),
            "graph" => ($"/graphs/{name}:1.0-beta", await client.Post("/graphs",
                $$$"""{"graph_name": "{{{name}}}", "graph_version": "1.0", "graph_release_tag": "beta", "graph_function_ids": ["a"], "graph_connection_data": {}}""")),
            "policy" => ($"/policy/{Uri(name)}", await client.Post("/policy", IpAllowlist(name, await server.StoreBundleAsync()).ToJsonString())),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        return (path, created.Header("ETag")!);
    }

    private static string Update(string kind) => kind switch
    {
        "executor" => """{"$set": {"executor_metadata.note": "changed"}}""",
        "graph" => """{"$set": {"graph_description": "changed"}}""",
        _ => """{"$set": {"description": "changed"}}""",
    };

    /// <summary>
    /// A write with an If-Match header whose value is empty, as <c>-H "If-Match: $ETAG"</c> sends it when the variable
    /// is unset. HttpClient drops an empty header value, so the request is made on the test server's context directly.
    /// </summary>
    private async Task<Answer> WithEmptyIfMatch(string method, string path, string? json = null)
    {
        var context = await server.Server.SendAsync(c =>
        {
            c.Request.Method = method;
            c.Request.Path = path;
            c.Request.Headers.IfMatch = "";
            if (json is null) return;
            c.Request.ContentType = "application/json";
            c.Request.Body = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json));
        }, TestContext.Current.CancellationToken);
        var text = await new StreamReader(context.Response.Body).ReadToEndAsync(TestContext.Current.CancellationToken);
        return new Answer(context.Response.StatusCode, text.Length > 0 ? JsonNode.Parse(text) : null,
            context.Response.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase));
    }

    private async Task ShouldBeUnchanged(string path, string etag)
    {
        var read = await client.Get(path);
        read.Status.ShouldBe(200, "the document must still be there");
        read.Header("ETag").ShouldBe(etag, "nothing may have been written");
    }

    [Theory]
    [InlineData("policy")]
    [InlineData("executor")]
    [InlineData("graph")]
    public async Task An_empty_if_match_is_a_400_naming_the_header_and_writes_nothing(string kind)
    {
        var (path, etag) = await CreateAsync(kind);

        foreach (var answer in new[] { await WithEmptyIfMatch("PUT", path, Update(kind)), await WithEmptyIfMatch("DELETE", path),
                     await client.Put(path, Update(kind), ifMatch: "  "), await client.Delete(path, ifMatch: " ") })
        {
            answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
            answer.Code.ShouldBe("bad_request");
            answer.Message.ShouldContain("If-Match header is empty");
        }
        await ShouldBeUnchanged(path, etag);
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("186")]
    [InlineData(",")]
    [InlineData("\"186")]
    [InlineData("\"1\" x")]
    [InlineData("W/186")]
    public async Task An_if_match_that_is_no_entity_tag_is_a_400_showing_the_expected_form(string header)
    {
        var (path, etag) = await CreateAsync("executor");

        foreach (var answer in new[] { await client.Put(path, Update("executor"), ifMatch: header), await client.Delete(path, ifMatch: header) })
        {
            answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
            answer.Message.ShouldContain("If-Match header");
            answer.Message.ShouldContain("\"<revision>\"");
        }
        await ShouldBeUnchanged(path, etag);
    }

    [Fact]
    public async Task An_empty_entity_tag_is_a_400_saying_revisions_are_never_empty()
    {
        var (path, etag) = await CreateAsync("executor");
        var answer = await client.Put(path, Update("executor"), ifMatch: "\"\"");
        answer.Status.ShouldBe(400);
        answer.Message.ShouldContain("empty entity tag");
        await ShouldBeUnchanged(path, etag);
    }

    [Theory]
    [InlineData("policy")]
    [InlineData("executor")]
    [InlineData("graph")]
    public async Task A_list_holding_the_current_etag_matches(string kind)
    {
        var (path, etag) = await CreateAsync(kind);

        var updated = await client.Put(path, Update(kind), ifMatch: $"\"999999\", {etag}");
        updated.Status.ShouldBe(200, updated.Body?.ToJsonString());
        var deleted = await client.Delete(path, ifMatch: $"{updated.Header("ETag")} , \"999999\"");
        deleted.Status.ShouldBe(200, deleted.Body?.ToJsonString());
        (await client.Get(path)).Status.ShouldBe(404);
    }

    [Fact]
    public async Task A_list_without_the_current_etag_is_a_409_listing_what_was_asked()
    {
        var (path, etag) = await CreateAsync("policy");
        var answer = await client.Put(path, Update("policy"), ifMatch: "\"999998\", \"999999\"");
        answer.Status.ShouldBe(409);
        answer.Code.ShouldBe("conflict");
        answer.Message.ShouldContain("\"999998\", \"999999\"");
        answer.Message.ShouldContain($"current revision is {etag}");
        await ShouldBeUnchanged(path, etag);
    }

    [Theory]
    [InlineData("policy")]
    [InlineData("executor")]
    [InlineData("graph")]
    public async Task A_weak_tag_never_matches_and_the_409_says_so(string kind)
    {
        var (path, etag) = await CreateAsync(kind);

        foreach (var answer in new[] { await client.Put(path, Update(kind), ifMatch: $"W/{etag}"), await client.Delete(path, ifMatch: $"W/{etag}") })
        {
            answer.Status.ShouldBe(409, answer.Body?.ToJsonString());
            answer.Code.ShouldBe("conflict");
            answer.Message.ShouldContain("weak tags never match If-Match");
            answer.Message.ShouldContain($"send the ETag as a read answered it: {etag}");
        }
        await ShouldBeUnchanged(path, etag);
    }

    [Fact]
    public async Task A_star_matches_any_existing_revision()
    {
        var (path, _) = await CreateAsync("executor");
        (await client.Put(path, Update("executor"), ifMatch: "*")).Status.ShouldBe(200);
        (await client.Delete(path, ifMatch: "*")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Removing_a_function_honours_if_match()
    {
        var policy = await server.RegisterPolicyAsync(Unique("ifm_fn"), GridServer.EchoPolicy);
        var name = Unique("ifm-fn");
        var deployed = await client.Post("/function/deployments/create/local", $$"""{"name": "{{name}}", "policy_rule_uri": "{{policy}}"}""");
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        var etag = (await client.Get($"/function/{name}")).Header("ETag")!;
        var path = $"/function/deployments/remove/{name}";

        (await WithEmptyIfMatch("DELETE", path)).Status.ShouldBe(400);
        var stale = await client.Delete(path, ifMatch: "\"999999\"");
        stale.Status.ShouldBe(409);
        stale.Message.ShouldContain($"function '{name}' has changed");
        (await client.Get($"/function/{name}")).Status.ShouldBe(200);

        (await client.Delete(path, ifMatch: etag)).Status.ShouldBe(200);
        (await client.Get($"/function/{name}")).Status.ShouldBe(404);
    }
}
