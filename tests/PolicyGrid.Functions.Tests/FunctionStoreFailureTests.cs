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

    [Fact]
    public async Task A_management_action_whose_journal_the_store_refuses_fails_and_leaves_no_change_anywhere()
    {
        // The action ran and was added to the in-memory journal before the store refused it: answered 503, it stayed in
        // the instance, and the instance's next turn applied that journal entry once more (add 10 after 1: 21, not 1),
        // while a restart, from the stored journal, went back to 1.
        var refusing = new RefusingContextStore();
        var server = new GridServer
        {
            PythonWorkers = 1,
            TestServices = services => services.AddSingleton<IContextStore>(sp => refusing.Over(sp.GetRequiredService<SqliteContextStore>())),
        };
        try
        {
            var client = server.CreateClient();
            var policy = await server.RegisterPolicyAsync("adder", CountingPolicy.Adder);
            (await client.Send(HttpMethod.Post, "/function/deployments/create/local",
                new JsonObject { ["name"] = "adder", ["policy_rule_uri"] = policy, ["replicas"] = 2 })).Status.ShouldBe(200);
            Task<Answer> Add(HttpClient on, int n) => on.Send(HttpMethod.Post, "/function/adder/management",
                new JsonObject { ["action"] = "add", ["data"] = new JsonObject { ["n"] = n } });
            async Task<int[]> Totals(HttpClient on) => await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
            {
                var answer = await on.Send(HttpMethod.Post, "/function/call_function/adder", new JsonObject());
                answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
                return answer.Data!["total"]!.GetValue<int>();
            }));
            (await Add(client, 1)).Status.ShouldBe(200);

            refusing.Refuse = true;
            var refused = await Add(client, 10);
            (refused.Status, refused.Message).ShouldBe((503, "the store is down"));
            refusing.Refuse = false;

            (await Totals(client)).ShouldAllBe(t => t == 1, "the action answered 503 changed an instance");
            await server.ExitAsync();
            server = server.Restart();
            (await Totals(server.CreateClient())).ShouldAllBe(t => t == 1);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_management_action_journalled_before_the_store_refused_the_instance_snapshot_is_answered_as_done()
    {
        // The journal took the action and then the instance's snapshot write failed: answered 503 ("retry"), the action
        // had happened all the same (the instance, read again from the store, replayed it from the journal), so a retry
        // set it twice. The journal is the action's durable record: the answer is now the action's.
        var refusing = new RefusingContextStore { Refuses = key => !key.EndsWith("!journal", StringComparison.Ordinal) };
        await using var server = new GridServer
        {
            PythonWorkers = 1,
            TestServices = services => services.AddSingleton<IContextStore>(sp => refusing.Over(sp.GetRequiredService<SqliteContextStore>())),
        };
        var client = server.CreateClient();
        var policy = await server.RegisterPolicyAsync("counting", CountingPolicy.Source);
        (await client.Send(HttpMethod.Post, "/function/deployments/create/local",
            new JsonObject { ["name"] = "tally", ["policy_rule_uri"] = policy, ["replicas"] = 1 })).Status.ShouldBe(200);

        refusing.Refuse = true;
        var set = await client.Send(HttpMethod.Post, "/function/tally/management",
            new JsonObject { ["action"] = "set", ["data"] = new JsonObject { ["count"] = 5 } });
        refusing.Refuse = false;

        set.Status.ShouldBe(200, set.Body?.ToJsonString());
        set.Data!["count"]!.GetValue<int>().ShouldBe(5);
        var next = await client.Send(HttpMethod.Post, "/function/call_function/tally", new JsonObject());
        next.Data!["count"]!.GetValue<int>().ShouldBe(6);
    }

    /// <summary>The server's context store, refusing every write while <see cref="Refuse"/> is set.</summary>
    private sealed class RefusingContextStore
    {
        public volatile bool Refuse;

        /// <summary>Which keys a refusing store refuses (all by default).</summary>
        public Func<string, bool> Refuses { get; init; } = _ => true;

        public IContextStore Over(IContextStore inner) => new Store(this, inner);

        private sealed class Store(RefusingContextStore owner, IContextStore inner) : IContextStore
        {
            public Task<JsonObject?> GetAsync(string key, CancellationToken ct = default) => inner.GetAsync(key, ct);

            public Task SetAsync(string key, JsonObject context, TimeSpan? ttl, CancellationToken ct = default) =>
                owner.Refuse && owner.Refuses(key) ? throw Problems.BackendUnavailable("the store is down") : inner.SetAsync(key, context, ttl, ct);

            public Task DeleteAsync(string key, CancellationToken ct = default) => inner.DeleteAsync(key, ct);
        }
    }
}
