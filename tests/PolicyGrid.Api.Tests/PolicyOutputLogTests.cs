using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>What a policy prints reaches the log of the server as <c>policy serve</c> composes it (it was filtered out once).</summary>
public sealed class PolicyOutputLogTests
{
    [Fact]
    public async Task What_a_policy_prints_during_a_type_2_call_is_in_the_server_log_with_its_uri()
    {
        var capture = new LogCapture();
        await using var server = new GridServer { TestServices = services => services.AddSingleton<ILoggerProvider>(capture) };
        var client = server.CreateClient();
        var uri = await server.StorePolicyAsync("printer", """
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    print("checking", input_data["who"])
                    return {"ok": True}
            """);
        var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, """{"who": "alice"}"""));
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());

        var expected = $"policy {uri} output: checking alice";
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!capture.Entries.Any(e => e.Message == expected) && DateTime.UtcNow < deadline) await Task.Delay(50, TestContext.Current.CancellationToken);
        var entry = capture.Entries.FirstOrDefault(e => e.Message == expected);
        entry.Message.ShouldBe(expected, capture.ToString());
        entry.Category.ShouldBe("PolicyGrid.Runtime.Hosting.PythonWorkerPool");
        entry.Id.ShouldBe(PolicyGrid.Runtime.Hosting.PythonWorkerPool.PolicyOutput);
    }
}
