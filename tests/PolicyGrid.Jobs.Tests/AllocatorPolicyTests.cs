using System.Text.Json.Nodes;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>An operator's registered "resource allocator policy" chooses the executor instead of the built-in rule.</summary>
public sealed class AllocatorPolicyTests : IAsyncLifetime
{
    // Deliberately the opposite of the built-in rule: the candidate with the FEWEST free vCPUs,
    // unless the job asks for a named executor through its inputs.
    private const string Allocator = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                wanted = input_data["job"]["inputs"].get("force")
                if wanted:
                    return {"executor_id": wanted}
                chosen = min(input_data["executors"], key=lambda e: e["free_vcpus"])
                return {"executor_id": chosen["executor_id"]}
        """;

    private readonly GridServer server = new() { PythonWorkers = 1, Settings = { ["PolicyGrid:Jobs:AllocatorPolicy"] = "allocator:1.0-test" } };
    private HttpClient client = null!;
    private string policy = "";

    public async ValueTask InitializeAsync()
    {
        client = server.CreateClient();
        await server.StorePolicyAsync("allocator", Allocator);
        policy = await server.StorePolicyAsync("work", "class AIOSv1PolicyRule:\n    def __init__(self, r, s, p): pass\n    def eval(self, p, i, c): return {}\n");
        await server.StoreExecutorAsync("small", "http://127.0.0.1:9", new JsonObject { ["pool"] = "p" }, new JsonObject { ["count"] = 2 });
        await server.StoreExecutorAsync("big", "http://127.0.0.1:9", new JsonObject { ["pool"] = "p" }, new JsonObject { ["count"] = 64 });
        await server.StoreExecutorAsync("sick", "http://127.0.0.1:9", new JsonObject { ["pool"] = "p" }, new JsonObject { ["count"] = 1 }, status: "unhealthy");
    }

    public async ValueTask DisposeAsync() => await server.DisposeAsync();

    [Fact]
    public async Task The_allocator_policy_decides_among_healthy_matching_executors()
    {
        var answer = await client.Post("/jobs/submit", $$$"""{"policy_rule_uri":"{{{policy}}}","node_selector":{"pool":"p"},"inputs":{}}""");
        answer.Status.ShouldBe(200, answer.Message);
        answer.Data!["executor_id"]!.GetValue<string>().ShouldBe("small");
    }

    [Fact]
    public async Task An_allocator_choosing_outside_the_candidates_is_a_502_and_records_nothing()
    {
        var answer = await client.Post("/jobs/submit", $$$"""{"policy_rule_uri":"{{{policy}}}","node_selector":{"pool":"p"},"inputs":{"force":"sick"}}""");
        answer.Status.ShouldBe(502);
        answer.Code.ShouldBe("backend_error");
        answer.Message!.ShouldContain("sick");
        (await client.Post("/jobs/query", "{}")).Data!.AsArray().ShouldBeEmpty();
    }
}
