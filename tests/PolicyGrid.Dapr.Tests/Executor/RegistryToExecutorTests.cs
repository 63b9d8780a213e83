
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using NSubstitute;
using NSubstitute.ExceptionExtensions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Tests.Adapters;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Executor;

/// <summary>
/// Both apps, each composed by its own Program: the registry (documents in a state store behind its
/// DaprClient) calls executor "dapr" by service invocation; a stand-in sidecar forwards the call to
/// the executor app as daprd would. What a user of the public API sees is the policy's answer.
/// </summary>
public sealed class RegistryToExecutorTests : IDisposable
{
    private readonly ExecutorAppFactory executor = new();
    private readonly FakeStateStore state = new();
    private readonly ForwardingSidecar sidecar;
    private readonly RegistryApp registryApp;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public RegistryToExecutorTests()
    {
        sidecar = new ForwardingSidecar(executor.Server.CreateHandler());
        registryApp = new RegistryApp(state, sidecar);
    }

    public void Dispose()
    {
        registryApp.Dispose();
        executor.Dispose();
    }

    [Fact]
    public async Task The_registry_starts_with_executor_dapr_registered_in_the_state_store()
    {
        var response = await registryApp.CreateClient().GetAsync("/executor/dapr", Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
        body["data"]!["executor_host_uri"]!.GetValue<string>().ShouldBe("dapr://policy-executor");
        state.Entries.ShouldContainKey("executors/dapr");
    }

    [Fact]
    public async Task Executor_dapr_cannot_be_pointed_elsewhere_or_deleted_through_the_api()
    {
        var client = registryApp.CreateClient();
        (await client.GetAsync("/executor/dapr", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var moved = await client.PutAsync("/executor/dapr",
            new StringContent("""{"$set": {"executor_host_uri": "http://127.0.0.1:9"}}""", Encoding.UTF8, "application/json"), Ct);
        moved.StatusCode.ShouldBe(HttpStatusCode.Conflict, await moved.Content.ReadAsStringAsync(Ct));
        (await client.DeleteAsync("/executor/dapr", Ct)).StatusCode.ShouldBe(HttpStatusCode.Conflict);
        var labelled = await client.PutAsync("/executor/dapr",
            new StringContent("""{"$set": {"executor_metadata.labels.zone": "a"}}""", Encoding.UTF8, "application/json"), Ct);
        labelled.StatusCode.ShouldBe(HttpStatusCode.OK, await labelled.Content.ReadAsStringAsync(Ct));
        var body = JsonNode.Parse(await (await client.GetAsync("/executor/dapr", Ct)).Content.ReadAsStringAsync(Ct))!;
        body["data"]!["executor_host_uri"]!.GetValue<string>().ShouldBe("dapr://policy-executor");
    }

    [Fact]
    public async Task Execute_policy_on_executor_dapr_answers_what_the_policy_returned()
    {
        executor.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject { ["allowed"] = true, ["reason"] = "allowed" }));

        var response = await registryApp.CreateClient().PostAsync("/executor/dapr/execute_policy",
            new StringContent("""{"policy_rule_uri": "ip_allowlist:1.0-beta", "input_data": {"ip": "10.0.0.1"}}""", Encoding.UTF8, "application/json"), Ct);

        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
        response.StatusCode.ShouldBe(HttpStatusCode.OK, body.ToJsonString());
        JsonNode.DeepEquals(body, JsonNode.Parse("""{"success": true, "data": {"allowed": true, "reason": "allowed"}}""")).ShouldBeTrue(body.ToJsonString());
        sidecar.Invoked.ShouldBe(["execute_policy"]);
    }

    [Fact]
    public async Task A_retired_policy_on_the_executor_is_the_registrys_410()
    {
        executor.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(Problems.Retired("policy ip_allowlist:1.0-beta is retired"));

        var response = await registryApp.CreateClient().PostAsync("/executor/dapr/execute_policy",
            new StringContent("""{"policy_rule_uri": "ip_allowlist:1.0-beta", "input_data": {}}""", Encoding.UTF8, "application/json"), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.Gone);
        JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["code"]!.GetValue<string>().ShouldBe("retired");
    }
}
