using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>A job's name is held to 256 characters, as every other name is, and its timeout to what a clock can hold and the server allows; anything else is a 400 and no job.</summary>
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

    [Theory]
    [InlineData("/jobs/submit/local", "1e30", "must be at most")]
    [InlineData("/create_job", "1e30", "must be at most")]
    [InlineData("/create_job", "1e-30", "at least 0.0000001 seconds")]
    public async Task A_timeout_no_clock_can_hold_is_a_400_naming_it_on_the_registry_and_on_a_node(string path, string timeout, string message)
    {
        var policy = await server.StorePolicyAsync(PolicyDocuments.Unique("timed_job"), GridServer.EchoPolicy);

        var answer = await client.Post(path,
            $$$"""{"job_id": "{{{Guid.NewGuid()}}}", "name": "t", "policy_rule_uri": "{{{policy}}}", "inputs": {}, "timeout_seconds": {{{timeout}}}}""");

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message.ShouldStartWith("timeout_seconds: ");
        answer.Message.ShouldContain(message);
        (await client.Post("/jobs/query", $$"""{"policy_rule_uri": "{{policy}}"}""")).Data!.AsArray().ShouldBeEmpty();
    }
}
