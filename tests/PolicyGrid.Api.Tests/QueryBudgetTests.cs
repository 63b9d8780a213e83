using System.Diagnostics;
using System.Text.Json.Nodes;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>A server whose queries may spend 200 ms evaluating their filter (PolicyGrid:Api:QueryTimeBudget).</summary>
public sealed class ShortQueryBudgetServer : GridServer
{
    public ShortQueryBudgetServer() => Settings["PolicyGrid:Api:QueryTimeBudget"] = "00:00:00.2";
}

/// <summary>
/// Each $regex match is bounded on its own, but a filter may hold 256 of them: the query as a whole has one time
/// budget, so such a filter over a long field answers a prompt 400 instead of holding a core for tens of seconds.
/// </summary>
public sealed class QueryBudgetTests(ShortQueryBudgetServer server) : IClassFixture<ShortQueryBudgetServer>
{
    private readonly HttpClient client = server.CreateClient();

    [Fact]
    public async Task Many_regexes_over_a_long_field_answer_a_prompt_400_naming_the_budget()
    {
        // No single regex comes near its own timeout on this value; all 256 together take seconds.
        await server.StorePolicyAsync(Unique("budget"), GridServer.EchoPolicy, new JsonObject { ["description"] = new string('a', 200_000) });
        var filter = new JsonObject
        {
            ["$or"] = new JsonArray([.. Enumerable.Range(100, 256)
                .Select(n => (JsonNode)new JsonObject { ["description"] = new JsonObject { ["$regex"] = $"a{{1,{n}}}b" } })]),
        };
        var watch = Stopwatch.StartNew();
        var answer = await client.Post("/policy/query", filter.ToJsonString());
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("bad_request");
        answer.Message!.ShouldContain("more than 200 ms");
        answer.Message!.ShouldContain("time budget for one query");
        watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(5));
        (await client.Post("/policy/query", """{"description": {"$regex": "^a{3}"}}""")).Status.ShouldBe(200);
    }
}
