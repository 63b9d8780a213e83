using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// JSON nests at most DocumentDepth.Max deep in request bodies and DocumentDepth.MaxStored in stored documents (updates:
/// BadInputTests); answers may be deeper. A body
/// nested 63 deep was once stored, answered with a 400 (the envelope pushed it past the writer's 64) and could then
/// not be read, changed or deleted, and took the collection's queries down with it.
/// </summary>
public sealed class NestingDepthTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    private static string Nested(int depth, string leaf = "1") =>
        string.Concat(Enumerable.Repeat("{\"a\":", depth - 1)) + leaf + new string('}', depth - 1);

    [Fact]
    public async Task A_body_nested_deeper_than_the_limit_is_a_400_and_nothing_is_stored()
    {
        var name = Unique("deep");
        var body = IpAllowlist(name, await server.StoreBundleAsync());
        body["metadata"] = JsonNode.Parse(Nested(DocumentDepth.Max + 5));
        var answer = await client.Post("/policy", body.ToJsonString());
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain("depth");
        (await client.Get($"/policy/{PolicyDocuments.Uri(name)}")).Status.ShouldBe(404);
        (await client.Post("/policy/query", "{}")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Input_nested_too_deep_is_a_400_and_a_policy_may_answer_deeper_than_that()
    {
        var uri = await server.StorePolicyAsync(Unique("deep_answer"), """
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    result = {"leaf": True}
                    for _ in range(100):
                        result = {"a": result}
                    return result
            """);
        var tooDeep = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, Nested(DocumentDepth.Max + 1)));
        tooDeep.Status.ShouldBe(400, tooDeep.Body?.ToJsonString());

        var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, "{}"));
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        JsonNode node = answer.Data!;
        for (var i = 0; i < 100; i++) node = node["a"]!;
        node["leaf"]!.GetValue<bool>().ShouldBeTrue();
    }
}
