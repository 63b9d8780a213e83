using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// On <c>serve</c>, a function's call and management action check that the function's policy is not retired before they
/// run. That check failed open: with the policy store failing, a retired policy's function ran on (the Dapr functions
/// app's actor refused it: a policy whose status cannot be read is not run). Both shapes now refuse it.
/// </summary>
public sealed class FunctionPolicyStatusUnreadableTests : IAsyncLifetime
{
    private readonly PolicyReads reads = new();
    private readonly GridServer server;
    private HttpClient client = null!;

    public FunctionPolicyStatusUnreadableTests() => server = new GridServer
    {
        PythonWorkers = 1,
        TestServices = services => services.AddSingleton<IDocumentStore>(sp => reads.Over(sp.GetRequiredService<SqliteDocumentStore>())),
    };

    public async ValueTask InitializeAsync()
    {
        client = server.CreateClient();
        var policy = await server.RegisterPolicyAsync("counting", CountingPolicy.Source);
        var deployed = await client.Send(HttpMethod.Post, "/function/deployments/create/local", new JsonObject { ["name"] = "counter", ["policy_rule_uri"] = policy });
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
    }

    public async ValueTask DisposeAsync() => await server.DisposeAsync();

    [Fact]
    public async Task A_call_and_an_action_of_a_function_whose_policy_status_cannot_be_read_fail_and_do_not_run()
    {
        (await client.Send(HttpMethod.Post, "/function/call_function/counter", new JsonObject())).Data!["count"]!.GetValue<int>().ShouldBe(1);

        reads.Failing = true;
        var call = await client.Send(HttpMethod.Post, "/function/call_function/counter", new JsonObject());
        var managed = await client.Send(HttpMethod.Post, "/function/counter/management", new JsonObject { ["action"] = "set", ["data"] = new JsonObject { ["count"] = 100 } });
        reads.Failing = false;

        call.Status.ShouldBe(503, "the function ran although its policy's status could not be read: " + call.Body?.ToJsonString());
        call.Message!.ShouldContain("the policy store is unreachable");
        managed.Status.ShouldBe(503, managed.Body?.ToJsonString());
        var next = await client.Send(HttpMethod.Post, "/function/call_function/counter", new JsonObject());
        next.Status.ShouldBe(200, next.Body?.ToJsonString());
        next.Data!["count"]!.GetValue<int>().ShouldBe(2, "neither refused call changed the function's state");
    }

    // The embedded store, whose policy reads answer 503 while Failing is set (a store with no write counter, so every call reads).
    private sealed class PolicyReads
    {
        public volatile bool Failing;

        public IDocumentStore Over(SqliteDocumentStore inner) => new Store(this, inner);

        private sealed class Store(PolicyReads reads, SqliteDocumentStore inner) : IDocumentStore
        {
            public Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) => reads.Failing && collection == Collections.Policies
                ? throw new PolicyGridException(503, ErrorCodes.BackendUnavailable, "the policy store is unreachable")
                : inner.GetAsync(collection, id, ct);
            public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.CreateAsync(collection, id, body, ct);
            public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) => inner.ReplaceAsync(collection, id, body, expectedRevision, ct);
            public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.UpsertAsync(collection, id, body, ct);
            public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => inner.DeleteAsync(collection, id, expectedRevision, ct);
            public Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => inner.QueryAsync(collection, query, ct);
        }
    }
}
