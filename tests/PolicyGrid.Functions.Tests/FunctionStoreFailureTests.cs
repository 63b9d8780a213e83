using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// The embedded function host when the store refuses what a call changed (a full disk, see PolicyGrid.Api.Tests'
/// FullDiskTests): the call fails, and it must leave nothing behind. The replica used to keep the change in memory, so
/// the next call counted on from the unsaved count, and a restart went back to the saved one.
/// </summary>
public sealed class FunctionStoreFailureTests
{
    [Fact]
    public async Task A_call_whose_state_the_store_refuses_fails_and_the_next_call_goes_on_from_what_was_saved()
    {
        var refusing = new RefusingContextStore();
        await using var server = new GridServer
        {
            PythonWorkers = 1,
            TestServices = services => services.AddSingleton<IContextStore>(sp => refusing.Over(sp.GetRequiredService<SqliteContextStore>())),
        };
        var client = server.CreateClient();
        var policy = await server.RegisterPolicyAsync("counting", CountingPolicy.Source);
        (await client.Send(HttpMethod.Post, "/function/deployments/create/local",
            new JsonObject { ["name"] = "tally", ["policy_rule_uri"] = policy, ["replicas"] = 1 })).Status.ShouldBe(200);
        async Task<Answer> Call() => await client.Send(HttpMethod.Post, "/function/call_function/tally", new JsonObject());

        (await Call()).Data!["count"]!.GetValue<int>().ShouldBe(1);

        refusing.Refuse = true;
        var refused = await Call();
        refused.Status.ShouldBe(503);
        refused.Message.ShouldBe("the store is down");

        refusing.Refuse = false;
        var next = await Call();
        next.Status.ShouldBe(200, next.Body?.ToJsonString());
        next.Data!["count"]!.GetValue<int>().ShouldBe(2);
        next.Data!["evals"]!.GetValue<int>().ShouldBe(2);
    }

    /// <summary>The server's context store, refusing every write while <see cref="Refuse"/> is set.</summary>
    private sealed class RefusingContextStore
    {
        public volatile bool Refuse;

        public IContextStore Over(IContextStore inner) => new Store(this, inner);

        private sealed class Store(RefusingContextStore owner, IContextStore inner) : IContextStore
        {
            public Task<JsonObject?> GetAsync(string key, CancellationToken ct = default) => inner.GetAsync(key, ct);

            public Task SetAsync(string key, JsonObject context, TimeSpan? ttl, CancellationToken ct = default) =>
                owner.Refuse ? throw Problems.BackendUnavailable("the store is down") : inner.SetAsync(key, context, ttl, ct);

            public Task DeleteAsync(string key, CancellationToken ct = default) => inner.DeleteAsync(key, ct);
        }
    }
}
