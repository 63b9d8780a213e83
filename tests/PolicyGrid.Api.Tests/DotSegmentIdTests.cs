using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// Clients and servers remove the path segments "." and ".." (also %2E%2E) before routing, so a document named
/// that way was stored and could never be read, called or deleted again: every id or name that appears in a path
/// refuses them (and any name made only of dots) when it is created.
/// </summary>
public sealed class DotSegmentIdTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static void ShouldNameTheField(Answer answer, string field, string value)
    {
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("validation_failed");
        answer.Message!.ShouldContain($"{field}: '{value}' is made only of dots");
        answer.Body!["errors"]!.AsArray().Select(e => e!["path"]!.GetValue<string>()).ShouldContain(field);
    }

    private async Task<int> CountAsync(string collection) => (await server.Store.QueryAsync(collection, DocumentQuery.All(), Ct)).Count;

    [Theory]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("...")]
    public async Task An_executor_id_made_only_of_dots_is_a_400_naming_it_and_nothing_is_stored(string id)
    {
        var before = await CountAsync(Collections.Executors);
        var body = new JsonObject { ["executor_id"] = id, ["executor_host_uri"] = "http://127.0.0.1:9" };
        ShouldNameTheField(await client.Post("/executor", body.ToJsonString()), "executor_id", id);
        (await CountAsync(Collections.Executors)).ShouldBe(before);
    }

    [Theory]
    [InlineData(".")]
    [InlineData("..")]
    public async Task A_function_name_made_only_of_dots_is_a_400_naming_it_and_nothing_is_deployed(string name)
    {
        var policy = await server.StorePolicyAsync(Unique("dots"), GridServer.EchoPolicy);
        var before = await CountAsync(Collections.Functions);
        var body = new JsonObject { ["name"] = name, ["policy_rule_uri"] = policy };
        ShouldNameTheField(await client.Post("/function/deployments/create/local", body.ToJsonString()), "name", name);
        (await CountAsync(Collections.Functions)).ShouldBe(before);
    }

    [Theory]
    [InlineData("name", "..")]
    [InlineData("version", ".")]
    [InlineData("release_tag", "..")]
    public async Task A_policy_uri_part_made_only_of_dots_is_a_400_naming_it_and_nothing_is_stored(string field, string value)
    {
        var body = IpAllowlist(Unique("dots"), await server.StoreBundleAsync());
        body[field] = value;
        var before = await CountAsync(Collections.Policies);
        ShouldNameTheField(await client.Post("/policy", body.ToJsonString()), field, value);
        (await CountAsync(Collections.Policies)).ShouldBe(before);
    }

    [Theory]
    [InlineData("graph_name", "..")]
    [InlineData("graph_version", ".")]
    [InlineData("graph_release_tag", "..")]
    [InlineData("graph_function_ids[0]", ".")]
    public async Task A_graph_name_part_or_node_made_only_of_dots_is_a_400_naming_it_and_nothing_is_stored(string field, string value)
    {
        var body = new JsonObject
        {
            ["graph_name"] = Unique("dots"), ["graph_version"] = "1.0", ["graph_release_tag"] = "beta",
            ["graph_function_ids"] = new JsonArray("only"), ["graph_connection_data"] = new JsonObject(),
        };
        if (field == "graph_function_ids[0]") body["graph_function_ids"] = new JsonArray(value);
        else body[field] = value;
        var before = await CountAsync(Collections.Graphs);
        ShouldNameTheField(await client.Post("/graphs", body.ToJsonString()), field, value);
        (await CountAsync(Collections.Graphs)).ShouldBe(before);
    }

    [Fact]
    public async Task Names_that_only_hold_dots_among_other_characters_still_work()
    {
        var body = new JsonObject { ["executor_id"] = Unique("..edge."), ["executor_host_uri"] = "http://127.0.0.1:9" };
        var created = await client.Post("/executor", body.ToJsonString());
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        (await client.Get($"/executor/{body["executor_id"]}")).Status.ShouldBe(200);
    }
}
