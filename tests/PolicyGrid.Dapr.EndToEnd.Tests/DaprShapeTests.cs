using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Shouldly;

namespace PolicyGrid.Dapr.EndToEnd.Tests;

/// <summary>
/// Registry and executor under real daprd sidecars on Redis. Skipped, with the reason, where no
/// container engine answers; never reported as passed without having run.
/// </summary>
public sealed class DaprShapeTests(DaprShape shape) : IClassFixture<DaprShape>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static void RequireEngine() => Assert.SkipUnless(ContainerEngine.Available, ContainerEngine.Reason);

    private HttpClient RegistryClient() => new()
    {
        BaseAddress = new Uri($"http://127.0.0.1:{shape.Registry.Port}"),
        Timeout = TimeSpan.FromSeconds(60),
        DefaultRequestHeaders = { Authorization = new AuthenticationHeaderValue("Bearer", shape.RegistryToken) },
    };

    /// <summary>Polls a condition with a bounded deadline (events cross processes and a broker).</summary>
    private static async Task<T> EventuallyAsync<T>(Func<Task<T>> read, Func<T, bool> done, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            var value = await read();
            if (done(value) || DateTime.UtcNow > deadline) return value;
            await Task.Delay(200, Ct);
        }
    }

    [Fact]
    public async Task The_registry_keeps_documents_in_the_dapr_state_store_and_lists_executor_dapr()
    {
        RequireEngine();
        using var client = RegistryClient();

        // The registration retries in the background until the sidecar and Redis answer.
        var executors = await EventuallyAsync(async () =>
        {
            var response = await client.PostAsync("/executor/query", new StringContent("{}", Encoding.UTF8, "application/json"), Ct);
            return response.StatusCode == HttpStatusCode.OK ? JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["data"]!.AsArray() : [];
        }, found => found.Count > 0, TimeSpan.FromSeconds(60));
        executors.ShouldContain(e => e!["executor_id"]!.GetValue<string>() == DaprNames.ExecutorId
            && e["executor_host_uri"]!.GetValue<string>() == DaprNames.ExecutorHostUri);
    }

    [Fact]
    public async Task A_malformed_evaluation_event_lands_in_the_dead_letter_topic_with_its_reason()
    {
        RequireEngine();
        using var sidecar = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{shape.RegistrySidecarHttpPort}") };
        var marker = "e2e-" + Guid.NewGuid().ToString("N");

        var published = await sidecar.PostAsync($"/v1.0/publish/{DaprNames.Components.PubSub}/{DaprNames.Topics.Evaluations}",
            new StringContent($$"""{"policy_rule_uri": "missing-colon", "correlation_id": "{{marker}}"}""", Encoding.UTF8, "application/json"), Ct);

        published.StatusCode.ShouldBe(HttpStatusCode.NoContent);
        var letters = await EventuallyAsync(() => shape.StreamAsync(DaprNames.Topics.DeadLetter, Ct), s => s.Contains(marker, StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        letters.ShouldContain(marker);
        letters.ShouldContain("input_data");
    }

    [Fact]
    public async Task Type_2_on_executor_dapr_goes_over_service_invocation_and_answers_the_contracts_errors()
    {
        RequireEngine();
        using var client = RegistryClient();

        // No such policy on the executor: the node's 404 comes back through both sidecars unchanged.
        var response = await client.PostAsync($"/executor/{DaprNames.ExecutorId}/execute_policy",
            new StringContent("""{"policy_rule_uri": "nobody:1.0-x", "input_data": {}}""", Encoding.UTF8, "application/json"), Ct);

        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
        ((int)response.StatusCode).ShouldBe(404, body.ToJsonString());
        body["code"]!.GetValue<string>().ShouldBe("not_found");
    }
}
