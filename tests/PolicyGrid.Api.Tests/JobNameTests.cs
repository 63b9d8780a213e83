using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>A job's name is held to 256 characters, as every other name is; a longer one is a 400 and no job.</summary>
public sealed class JobNameTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    [Theory]
    [InlineData("/jobs/submit/local")]
    [InlineData("/jobs/submit")]
    [InlineData("/create_job")]
    public async Task A_name_over_256_characters_is_a_400_naming_it_and_no_job_is_recorded(string path)
    {
        var policy = await server.StorePolicyAsync(PolicyDocuments.Unique("named_job"), GridServer.EchoPolicy);
        var name = new string('n', 100_000);

        var answer = await client.Post(path,
            $$$"""{"job_id": "{{{Guid.NewGuid()}}}", "name": "{{{name}}}", "policy_rule_uri": "{{{policy}}}", "inputs": {}}""");

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("validation_failed");
        answer.Message.ShouldBe("name: is 100000 characters long; at most 256");
        (await client.Post("/jobs/query", $$"""{"policy_rule_uri": "{{policy}}"}""")).Data!.AsArray().ShouldBeEmpty();
    }
}
