using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Api.Graphs;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

public sealed class GraphExecutionRestartTests
{
    [Fact]
    public async Task A_finished_async_execution_is_still_there_after_a_restart_and_an_unfinished_one_reads_as_failed()
    {
        await using var server = new GridServer();
        var hold = Path.Combine(server.DataDirectory, "hold-" + Guid.NewGuid().ToString("N"));
        var client = server.CreateClient();
        var policy = await server.RegisterPolicyAsync("node", GraphPolicies.Node);
        foreach (var (name, parameters) in new[]
        {
            ("quick", new JsonObject { ["tag"] = "quick" }),
            ("stuck", new JsonObject { ["tag"] = "stuck", ["hold"] = hold }),
        })
        {
            (await client.Send(HttpMethod.Post, "/function/deployments/create/local",
                new JsonObject { ["name"] = name, ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = parameters })).Status.ShouldBe(200);
            (await client.Send(HttpMethod.Post, "/graphs", new JsonObject
            {
                ["graph_name"] = name, ["graph_version"] = "1", ["graph_release_tag"] = "t",
                ["graph_function_ids"] = new JsonArray(name), ["graph_connection_data"] = new JsonObject(),
            })).Status.ShouldBe(200);
        }

        var done = (await client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = "quick:1-t", ["input_data"] = new JsonObject(), ["async"] = true }))
            .Data!["execution_id"]!.GetValue<string>();
        var cut = (await client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = "stuck:1-t", ["input_data"] = new JsonObject(), ["async"] = true }))
            .Data!["execution_id"]!.GetValue<string>();
        var giveUp = DateTime.UtcNow.AddSeconds(20);
        while ((await client.Send(HttpMethod.Get, $"/graph/executions/{done}")).Data!["status"]!.GetValue<string>() == "running")
        {
            DateTime.UtcNow.ShouldBeLessThan(giveUp);
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        (await client.Send(HttpMethod.Get, $"/graph/executions/{cut}")).Data!["status"]!.GetValue<string>().ShouldBe("running");
        await server.ExitAsync();
        await File.WriteAllTextAsync(hold, "", TestContext.Current.CancellationToken);

        await using var restarted = server.Restart();
        var again = restarted.CreateClient();
        var finished = (await again.Send(HttpMethod.Get, $"/graph/executions/{done}")).Data!;
        finished["status"]!.GetValue<string>().ShouldBe("succeeded");
        finished["result"]!["by"]!.GetValue<string>().ShouldBe("quick");
        var interrupted = (await again.Send(HttpMethod.Get, $"/graph/executions/{cut}")).Data!;
        interrupted["status"]!.GetValue<string>().ShouldBe("failed");
        // A graceful stop records the cut-off run itself; after a hard kill the next read says the server restarted.
        interrupted["error"]!.GetValue<string>().ShouldMatch("stopped|restarted");
        interrupted["error_code"]!.GetValue<string>().ShouldBe("backend_unavailable");
    }

    // The read of an execution's status raced its end: the read saw "running", the run then stored its result and left
    // the set of runs in progress, and the status check, finding it gone, took it for one cut off by a restart, answered
    // "failed" and stored that over the result. Seen once under a busy machine; forced here by a store that answers the
    // status read with the copy from before the run ended.
    [Fact]
    public async Task An_execution_that_ends_while_its_status_is_read_reads_as_succeeded_and_stays_so()
    {
        var stale = new StaleExecutionReads();
        await using var server = new GridServer
        {
            TestServices = services => services.AddSingleton(sp => ActivatorUtilities.CreateInstance<GraphRegistry>(sp, stale.Over(sp.GetRequiredService<IDocumentStore>()))),
            // The node waits for a release file this process makes in /tmp: its worker must share the host's /tmp.
            Settings = new() { ["PolicyGrid:Runtime:Pool:PrivateTemp"] = "false" },
        };
        var client = server.CreateClient();
        var policy = await server.RegisterPolicyAsync("node", GraphPolicies.Node);
        (await client.Send(HttpMethod.Post, "/function/deployments/create/local",
            new JsonObject { ["name"] = "racer", ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = new JsonObject { ["tag"] = "racer", ["hold"] = stale.Release } })).Status.ShouldBe(200);
        (await client.Send(HttpMethod.Post, "/graphs", new JsonObject
        {
            ["graph_name"] = "racer", ["graph_version"] = "1", ["graph_release_tag"] = "t",
            ["graph_function_ids"] = new JsonArray("racer"), ["graph_connection_data"] = new JsonObject(),
        })).Status.ShouldBe(200);

        var id = (await client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = "racer:1-t", ["input_data"] = new JsonObject(), ["async"] = true }))
            .Data!["execution_id"]!.GetValue<string>();
        stale.HoldNextStatusRead(id);
        var first = await client.Send(HttpMethod.Get, $"/graph/executions/{id}");
        stale.ServedStale.ShouldBeTrue("the double handed the status check a copy from before the run ended");
        first.Data!["status"]!.GetValue<string>().ShouldBe("succeeded", first.Body?.ToJsonString());
        var again = (await client.Send(HttpMethod.Get, $"/graph/executions/{id}")).Data!;
        again["status"]!.GetValue<string>().ShouldBe("succeeded");
        again["result"]!["by"]!.GetValue<string>().ShouldBe("racer");
        File.Delete(stale.Release);
    }

    // The store refused the record of how an async execution ended (a full disk): the record was dropped, the run left
    // the runs in progress, and the next read stored it as failed "the server restarted before this execution finished",
    // its result lost. The end is now tried again until it is stored, and the execution reads as running meanwhile.
    [Fact]
    public async Task An_execution_whose_end_the_store_refuses_reads_as_running_then_as_it_ended_once_the_store_takes_it()
    {
        var refusing = new RefusedEnds();
        var log = new LogCapture();
        await using var server = new GridServer
        {
            TestServices = services =>
            {
                services.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(log);
                services.AddSingleton(sp => ActivatorUtilities.CreateInstance<GraphRegistry>(sp, refusing.Over(sp.GetRequiredService<IDocumentStore>())));
            },
        };
        var client = server.CreateClient();
        var policy = await server.RegisterPolicyAsync("node", GraphPolicies.Node);
        (await client.Send(HttpMethod.Post, "/function/deployments/create/local",
            new JsonObject { ["name"] = "ender", ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = new JsonObject { ["tag"] = "ender" } })).Status.ShouldBe(200);
        (await client.Send(HttpMethod.Post, "/graphs", new JsonObject
        {
            ["graph_name"] = "ender", ["graph_version"] = "1", ["graph_release_tag"] = "t",
            ["graph_function_ids"] = new JsonArray("ender"), ["graph_connection_data"] = new JsonObject(),
        })).Status.ShouldBe(200);

        refusing.Refuse = true;
        var id = (await client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = "ender:1-t", ["input_data"] = new JsonObject(), ["async"] = true }))
            .Data!["execution_id"]!.GetValue<string>();
        var giveUp = DateTime.UtcNow.AddSeconds(30);
        while (!log.Entries.Any(e => e.Message.StartsWith($"graph execution {id} of ender:1-t: could not record how it ended (succeeded)", StringComparison.Ordinal)))
        {
            DateTime.UtcNow.ShouldBeLessThan(giveUp, log.ToString());
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        (await client.Send(HttpMethod.Get, $"/graph/executions/{id}")).Data!["status"]!.GetValue<string>().ShouldBe("running");

        refusing.Refuse = false;
        JsonNode ended;
        while ((ended = (await client.Send(HttpMethod.Get, $"/graph/executions/{id}")).Data!)["status"]!.GetValue<string>() == "running")
        {
            DateTime.UtcNow.ShouldBeLessThan(giveUp);
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        ended["status"]!.GetValue<string>().ShouldBe("succeeded", ended.ToJsonString());
        ended["result"]!["by"]!.GetValue<string>().ShouldBe("ender");
    }

    /// <summary>Passes everything through, except that it refuses to store an execution's end while <see cref="Refuse"/> is set.</summary>
    private sealed class RefusedEnds
    {
        public volatile bool Refuse;

        public IDocumentStore Over(IDocumentStore inner) => new Store(inner, this);

        private sealed class Store(IDocumentStore inner, RefusedEnds owner) : IDocumentStore
        {
            public Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) => inner.GetAsync(collection, id, ct);
            public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.CreateAsync(collection, id, body, ct);
            public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) => inner.ReplaceAsync(collection, id, body, expectedRevision, ct);
            public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) =>
                owner.Refuse && collection == Collections.GraphExecutions
                    ? throw new IOException("No space left on device", 28)
                    : inner.UpsertAsync(collection, id, body, ct);
            public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => inner.DeleteAsync(collection, id, expectedRevision, ct);
            public Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => inner.QueryAsync(collection, query, ct);
        }
    }

    /// <summary>
    /// Passes everything through, except one read of a held execution: it reads "running" (the node waits for the
    /// <see cref="Release"/> file), lets the run end, and answers that "running" copy once the run has stored its end and
    /// a moment has passed for it to leave the runs in progress.
    /// </summary>
    private sealed class StaleExecutionReads
    {
        private string? held;
        public string Release { get; } = Path.Combine(Path.GetTempPath(), "pg-release-" + Guid.NewGuid().ToString("N"));
        public bool ServedStale { get; private set; }

        public void HoldNextStatusRead(string id) => held = id;

        public IDocumentStore Over(IDocumentStore inner) => new Store(inner, this);

        private sealed class Store(IDocumentStore inner, StaleExecutionReads owner) : IDocumentStore
        {
            public async Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default)
            {
                var read = await inner.GetAsync(collection, id, ct);
                if (collection != Collections.GraphExecutions || owner.held != id) return read;
                owner.held = null;
                if (read?.Body["status"]?.GetValue<string>() != "running") return read;
                await File.WriteAllTextAsync(owner.Release, "", ct);
                var giveUp = DateTime.UtcNow.AddSeconds(20);
                while ((await inner.GetAsync(collection, id, ct))!.Body["status"]!.GetValue<string>() == "running")
                {
                    DateTime.UtcNow.ShouldBeLessThan(giveUp);
                    await Task.Delay(10, ct);
                }
                await Task.Delay(200, ct); // FinishAsync leaves _running right after storing its end
                owner.ServedStale = true;
                return read;
            }

            public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.CreateAsync(collection, id, body, ct);
            public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) => inner.ReplaceAsync(collection, id, body, expectedRevision, ct);
            public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.UpsertAsync(collection, id, body, ct);
            public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => inner.DeleteAsync(collection, id, expectedRevision, ct);
            public Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => inner.QueryAsync(collection, query, ct);
        }
    }
}
