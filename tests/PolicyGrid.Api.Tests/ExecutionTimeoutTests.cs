using System.Text.Json.Nodes;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// A timeout_seconds over the limit is told the limit that refused it, and the setting that holds it: this server's
/// PolicyGrid:Runtime:Execution:MaxTimeout (300 s by default), whether it is 301 or 1e9.
/// </summary>
public sealed class ExecutionTimeoutTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    [Theory]
    [InlineData("/executor/local/execute_policy", "301", "301")]
    [InlineData("/executor/local/execute_policy", "3600", "3600")]
    [InlineData("/executor/local/execute_policy", "1e9", "1000000000")]
    [InlineData("/executor/local/execute_policy", "-1", "-1")]
    [InlineData("/execute_policy", "1000", "1000")]
    public async Task An_execute_timeout_over_the_limit_names_the_limit_that_applies_and_its_setting(string path, string timeout, string shown)
    {
        var answer = await client.Post(path, $$"""{"policy_rule_uri": "p:1.0-beta", "input_data": {}, "timeout_seconds": {{timeout}}}""");

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("validation_failed");
        answer.Message.ShouldBe($"timeout_seconds: must be more than 0 and at most 300 (PolicyGrid:Runtime:Execution:MaxTimeout), not {shown}");
    }

    [Fact]
    public async Task A_timeout_past_a_doubles_range_is_refused_as_out_of_range_before_the_limit_is_read()
    {
        var answer = await client.Post("/execute_policy", """{"policy_rule_uri": "p:1.0-beta", "input_data": {}, "timeout_seconds": 1e400}""");

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message.ShouldContain("the number at $.timeout_seconds is out of range (1e400)");
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("1e-9")]
    [InlineData("\"30\"")]
    public async Task A_policy_whose_timeout_estimate_is_unusable_is_refused_and_not_stored(string timeout)
    {
        var name = PolicyDocuments.Unique("estimate");
        var body = new JsonObject
        {
            ["name"] = name, ["version"] = "1.0", ["release_tag"] = "test", ["code"] = await server.StoreBundleAsync(),
            ["type"] = "python_class_v1", ["resource_estimates"] = JsonNode.Parse($$"""{"timeout_seconds": {{timeout}}}"""),
        };

        var answer = await client.Post("/policy", body.ToJsonString());

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message.ShouldStartWith("resource_estimates.timeout_seconds: must be a number of seconds");
        (await client.Get($"/policy/{name}:1.0-test")).Status.ShouldBe(404);
    }

    [Theory]
    [InlineData("1e12")]
    [InlineData("1e-9")]
    public async Task A_stored_policy_with_a_timeout_estimate_the_clock_cannot_hold_still_runs(string timeout)
    {
        // 1e12 s overflowed TimeSpan (a 500 on every call), 1e-9 s was a deadline of zero (a 400 about a timeout_seconds
        // the caller never sent). An older server stored both; they now run with the capped or the default deadline.
        var uri = await server.StorePolicyAsync(PolicyDocuments.Unique("stored"), GridServer.EchoPolicy,
            new JsonObject { ["resource_estimates"] = JsonNode.Parse($$"""{"timeout_seconds": {{timeout}}}""") });

        var answer = await client.Post("/executor/local/execute_policy", $$$"""{"policy_rule_uri": "{{{uri}}}", "input_data": {"x": 1}}""");
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());

        var retired = await client.Put($"/policy/{uri}", """{"$set": {"status": "retired"}}""");
        retired.Status.ShouldBe(200, retired.Body?.ToJsonString());
        var changed = await client.Put($"/policy/{uri}", """{"$set": {"resource_estimates.timeout_seconds": 0}}""");
        changed.Status.ShouldBe(400, changed.Body?.ToJsonString());
        changed.Message.ShouldContain("resource_estimates.timeout_seconds");
    }

    [Fact]
    public async Task A_management_timeout_over_the_limit_names_it_too()
    {
        var answer = await client.Post("/executor/local/management", """{"policy_rule_uri": "p:1.0-beta", "action": "a", "timeout_seconds": 900}""");
        answer.Status.ShouldBe(400);
        answer.Message.ShouldContain("at most 300 (PolicyGrid:Runtime:Execution:MaxTimeout), not 900");
    }
}

/// <summary>The limit follows the setting.</summary>
public sealed class ConfiguredExecutionTimeoutTests(ConfiguredExecutionTimeoutTests.LongTimeoutServer server) : IClassFixture<ConfiguredExecutionTimeoutTests.LongTimeoutServer>
{
    public sealed class LongTimeoutServer : GridServer
    {
        public LongTimeoutServer() => Settings = new() { ["PolicyGrid:Runtime:Execution:MaxTimeout"] = "00:20:00" };
    }

    [Fact]
    public async Task The_message_states_the_configured_limit()
    {
        var answer = await server.CreateClient().Post("/executor/local/execute_policy", """{"policy_rule_uri": "p:1.0-beta", "input_data": {}, "timeout_seconds": 5000}""");
        answer.Status.ShouldBe(400);
        answer.Message.ShouldContain("at most 1200 (PolicyGrid:Runtime:Execution:MaxTimeout), not 5000");
    }
}
