using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Dapr.Actors;
using Dapr.Actors.Client;
using Dapr.Actors.Runtime;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// The registry's actor adapter against real <see cref="PolicyFunctionActor"/>s: a proxy factory that hands out the
/// actors themselves, one turn at a time per actor id as Dapr does, over test state managers and a real worker pool.
/// </summary>
public sealed class ActorFunctionHostTests : IAsyncLifetime
{
    private readonly TestBundleSource _bundles = new();
    private PythonWorkerPool _pool = null!;
    private InProcessActors _actors = null!;

    public ValueTask InitializeAsync()
    {
        _pool = new PythonWorkerPool(new WorkerPoolOptions
        {
            Workers = 2,
            MemoryLimitBytes = 512L << 20,
            WorkDirectory = Path.Combine(Path.GetTempPath(), "policygrid-functions-tests", "workers-" + Guid.NewGuid().ToString("N")[..8]),
        }, NullLogger<PythonWorkerPool>.Instance);
        _actors = new InProcessActors(id => new PolicyFunctionActor(
            ActorHost.CreateForTest<PolicyFunctionActor>(new ActorTestOptions { ActorId = id }), _pool, _bundles, Options.Create(new FunctionActorOptions()), new TestStateManager()));
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync() => await _pool.DisposeAsync();

    private FunctionSpec Spec(string name, int replicas) => new(name, new JsonObject
    {
        ["policy_rule_uri"] = "counting:1.0-test",
        ["code"] = _bundles.Add("counting", CountingPolicy.Source),
        ["policy_parameters"] = new JsonObject { ["step"] = 1 },
    }, new FunctionScale(replicas));

    [Fact]
    public async Task Concurrent_calls_through_the_proxy_each_take_a_turn_and_none_is_lost()
    {
        var host = new ActorFunctionHost(_actors, new UnusedDocuments());
        await host.DeployAsync(Spec("shared", 1), TestContext.Current.CancellationToken);

        var counts = await Task.WhenAll(Enumerable.Range(0, 30).Select(_ => host.CallAsync("shared", new JsonObject(), TestContext.Current.CancellationToken)));

        counts.Select(c => c["count"]!.GetValue<int>()).Order().ShouldBe(Enumerable.Range(1, 30));
        _actors.Ids.ShouldBe(["shared"]);
    }

    [Fact]
    public async Task Replicas_are_actors_named_name_hash_i_and_management_reaches_each()
    {
        var host = new ActorFunctionHost(_actors, new UnusedDocuments());
        await host.DeployAsync(Spec("pair", 2), TestContext.Current.CancellationToken);

        await host.ManageAsync("pair", "set", new JsonObject { ["count"] = 10 }, TestContext.Current.CancellationToken);
        var next = await host.CallAsync("pair", new JsonObject(), TestContext.Current.CancellationToken);

        _actors.Ids.Order().ShouldBe(["pair~0", "pair~1"]);
        next["count"]!.GetValue<int>().ShouldBe(11);
    }

    [Fact]
    public async Task Policy_errors_keep_their_status_and_removed_functions_answer_404()
    {
        var host = new ActorFunctionHost(_actors, new UnusedDocuments());
        await host.DeployAsync(Spec("gone", 1), TestContext.Current.CancellationToken);

        var failure = await Should.ThrowAsync<PolicyGridException>(() => host.CallAsync("gone", new JsonObject { ["fail"] = true }, TestContext.Current.CancellationToken));
        failure.Status.ShouldBe(422);
        await host.RemoveAsync("gone", TestContext.Current.CancellationToken);
        await host.DeployAsync(Spec("other", 1), TestContext.Current.CancellationToken);

        var missing = await Should.ThrowAsync<PolicyGridException>(() => new ActorFunctionHost(_actors, new UnusedDocuments(known: ("gone", 1)))
            .CallAsync("gone", new JsonObject(), TestContext.Current.CancellationToken));
        missing.Status.ShouldBe(404);
    }

    [Fact]
    public async Task A_function_whose_policy_cannot_load_is_refused_with_the_policys_error_not_a_503()
    {
        // The actor used to throw, and remoting turned that into "the functions app could not be reached" (503).
        var host = new ActorFunctionHost(_actors, new UnusedDocuments());
        var broken = new FunctionSpec("broken", new JsonObject
        {
            ["policy_rule_uri"] = "broken:1.0-test",
            ["code"] = _bundles.Add("broken", CountingPolicy.FailsToLoad),
        }, new FunctionScale(2));

        var e = await Should.ThrowAsync<PolicyGridException>(() => host.DeployAsync(broken, TestContext.Current.CancellationToken));

        (e.Status, e.Code).ShouldBe((422, ErrorCodes.PolicyError));
        e.Message.ShouldContain("no licence on this host");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Management_failing_on_the_first_replica_runs_nowhere_else_and_a_replica_where_it_fails_later_restarts_from_the_first(bool keepsState)
    {
        // A replica where the action failed after replica 0 succeeded was only named in a failure answer and went on
        // without it; serve restarts such an instance from the first one's state.
        var host = new ActorFunctionHost(_actors, new UnusedDocuments());
        var allowlist = new FunctionSpec("allow", new JsonObject
        {
            ["policy_rule_uri"] = "allow:1.0-test",
            ["code"] = _bundles.Add(keepsState ? "allow" : "plain-allow", keepsState ? CountingPolicy.AllowListKeepingState : CountingPolicy.AllowList),
        }, new FunctionScale(3));
        await host.DeployAsync(allowlist, TestContext.Current.CancellationToken);
        // Replica #1 serves a call: add_ip refusing after one call fails there only.
        await _actors.CreateActorProxy<IPolicyFunctionActor>(FunctionActors.Replica("allow", 1, 3), FunctionActors.ActorType)
            .CallAsync(new FunctionActorCall("""{"ip": "10.9.9.9"}"""));

        var added = await host.ManageAsync("allow", "add_ip", new JsonObject { ["ip"] = "10.1.1.1", ["refuse_after_evals"] = 1 }, TestContext.Current.CancellationToken);

        added["ips"]!.AsArray().Select(ip => ip!.GetValue<string>()).ShouldBe(["10.1.1.1"]);
        (await Allowed(0)).ShouldBeTrue();
        (await Allowed(2)).ShouldBeTrue();
        var onSecond = await Check(1);
        onSecond["allowed"]!.GetValue<bool>().ShouldBeTrue("replica #1 went on without the action");
        // From replica 0's state (no call served), or from the deployment with replica 0's journal replayed.
        onSecond["evals"]!.GetValue<int>().ShouldBe(1);

        // Replica #0 has served a call now: the action fails there, and is the answer; #2 never runs it.
        var refused = await Should.ThrowAsync<PolicyGridException>(() =>
            host.ManageAsync("allow", "add_ip", new JsonObject { ["ip"] = "10.2.2.2", ["refuse_after_evals"] = 1 }, TestContext.Current.CancellationToken));

        refused.Status.ShouldBe(422);
        refused.Message.ShouldNotContain("instances");
        (await Allowed(2, "10.2.2.2")).ShouldBeFalse();
    }

    [Fact]
    public async Task A_read_only_action_failing_on_a_later_replica_restarts_nothing_and_the_answer_names_the_replica()
    {
        var host = new ActorFunctionHost(_actors, new UnusedDocuments());
        var source = CountingPolicy.AllowListKeepingState.Replace("if action == \"add_ip\":",
            "if action == \"audit\":\n            if self.evals >= 1:\n                raise ValueError(\"audit refused after %d calls\" % self.evals)\n" +
            "            return {\"ok\": True}\n        if action == \"add_ip\":", StringComparison.Ordinal);
        var allowlist = new FunctionSpec("allow", new JsonObject
        {
            ["policy_rule_uri"] = "allow:1.0-test",
            ["code"] = _bundles.Add("audited-allow", source),
            ["management_commands_schema"] = new JsonArray(
                new JsonObject { ["name"] = "add_ip" }, new JsonObject { ["name"] = "audit", ["read_only"] = true }),
        }, new FunctionScale(3));
        await host.DeployAsync(allowlist, TestContext.Current.CancellationToken);
        (await Check(1, "10.9.9.9"))["evals"]!.GetValue<int>().ShouldBe(1);

        var split = await Should.ThrowAsync<PolicyGridException>(() =>
            host.ManageAsync("allow", "audit", [], TestContext.Current.CancellationToken));

        (split.Status, split.Code).ShouldBe((422, ErrorCodes.PolicyError));
        split.Message.ShouldContain("succeeded on 2 of 3 instances");
        split.Message.ShouldContain("instance #1 (");
        split.Message.ShouldContain("audit refused after 1 calls");
        (await Check(1, "10.9.9.9"))["evals"]!.GetValue<int>().ShouldBe(2, "replica #1 kept its own state");
    }

    private async Task<JsonObject> Check(int replica, string ip = "10.1.1.1") =>
        (await _actors.CreateActorProxy<IPolicyFunctionActor>(FunctionActors.Replica("allow", replica, 3), FunctionActors.ActorType)
            .CallAsync(new FunctionActorCall($$"""{"ip": "{{ip}}"}"""))).Unwrap();

    private async Task<bool> Allowed(int replica, string ip = "10.1.1.1") =>
        (await _actors.CreateActorProxy<IPolicyFunctionActor>(FunctionActors.Replica("allow", replica, 3), FunctionActors.ActorType)
            .CallAsync(new FunctionActorCall($$"""{"ip": "{{ip}}"}"""))).Unwrap()["allowed"]!.GetValue<bool>();

    [Fact]
    public async Task The_proxy_waits_as_long_as_the_longest_policy_deadline_not_the_sdks_100_seconds()
    {
        var runtime = new PolicyGrid.Runtime.PolicyRuntimeOptions();
        runtime.Execution.MaxTimeout = TimeSpan.FromMinutes(5);
        var host = new ActorFunctionHost(_actors, new UnusedDocuments(), Options.Create(runtime));
        await host.DeployAsync(Spec("patient", 1), TestContext.Current.CancellationToken);
        await host.CallAsync("patient", new JsonObject(), TestContext.Current.CancellationToken);

        _actors.Options.ShouldNotBeEmpty();
        foreach (var options in _actors.Options)
        {
            options.ShouldNotBeNull("a proxy with the SDK's default options gives up on a call after 100 s");
            options.RequestTimeout.ShouldNotBeNull();
            options.RequestTimeout.Value.ShouldBeGreaterThan(TimeSpan.FromMinutes(5));
            options.UseJsonSerialization.ShouldBeTrue("the functions app registers its actors for JSON remoting");
        }
    }

    [Fact]
    public async Task Every_call_that_reaches_an_actor_is_in_the_decision_log_with_the_caller_and_graph_run_it_carried()
    {
        var ct = TestContext.Current.CancellationToken;
        var directory = Directory.CreateTempSubdirectory("pg-actor-decisions-").FullName;
        try
        {
            var store = new PolicyGrid.Embedded.Storage.SqliteDocumentStore(new PolicyGrid.Embedded.Storage.SqliteDatabase(Path.Combine(directory, "documents.db")));
            await using var log = new DecisionLog(store, new PolicyGrid.Runtime.DecisionLogOptions(), TimeProvider.System, NullLogger<DecisionLog>.Instance);
            var actors = new InProcessActors(id => new PolicyFunctionActor(ActorHost.CreateForTest<PolicyFunctionActor>(new ActorTestOptions { ActorId = id }),
                _pool, _bundles, Options.Create(new FunctionActorOptions()), new TestStateManager(), decisions: log));
            var host = new ActorFunctionHost(actors, new UnusedDocuments());
            await host.DeployAsync(Spec("audited", 2), ct);
            host.RecordsCalls.ShouldBeTrue("the registry leaves the calls that reach the actors to them, so none is recorded twice");

            await host.CallAsync("audited", new JsonObject(), new FunctionCallOrigin("ci", "g:1.0-a", "run-1"), ct);
            await Should.ThrowAsync<PolicyGridException>(() => host.CallAsync("audited", new JsonObject { ["fail"] = true }, new FunctionCallOrigin("ci"), ct));
            await host.CallAsync("audited", new JsonObject(), ct);
            await log.FlushAsync(ct);

            var decisions = (await store.QueryAsync(Collections.Decisions, new DocumentQuery(PolicyGrid.Core.Querying.FilterParser.Parse(new JsonObject()), [SortKey.ById(PolicyGrid.Core.Ports.SortDirection.Asc)]), ct))
                .Select(d => d.Body).ToList();
            decisions.Count.ShouldBe(3, "one record per call, whichever replica ran it");
            decisions.ShouldAllBe(d => d["kind"]!.GetValue<string>() == "function_call" && d["function_id"]!.GetValue<string>() == "audited"
                && d["policy_rule_uri"]!.GetValue<string>() == "counting:1.0-test" && d["bundle_sha256"]!.GetValue<string>().Length == 64);
            (decisions[0]["caller"]!.GetValue<string>(), decisions[0]["graph_id"]!.GetValue<string>(), decisions[0]["execution_id"]!.GetValue<string>(), decisions[0]["status"]!.GetValue<int>())
                .ShouldBe(("ci", "g:1.0-a", "run-1", 200));
            (decisions[1]["caller"]!.GetValue<string>(), decisions[1]["status"]!.GetValue<int>(), decisions[1]["error_code"]!.GetValue<string>()).ShouldBe(("ci", 422, "policy_error"));
            decisions[1].ContainsKey("graph_id").ShouldBeFalse();
            decisions[2]["caller"]!.GetValue<string>().ShouldBe("unknown", "a call that did not say who asked is not recorded as an anonymous user's");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task With_refuse_an_actor_whose_decision_log_is_failing_refuses_calls_before_its_policy_runs_and_serves_once_the_store_takes_one()
    {
        var ct = TestContext.Current.CancellationToken;
        var directory = Directory.CreateTempSubdirectory("pg-actor-unrecorded-").FullName;
        try
        {
            var outage = new PolicyGrid.TestSupport.DecisionStoreOutage(
                new PolicyGrid.Embedded.Storage.SqliteDocumentStore(new PolicyGrid.Embedded.Storage.SqliteDatabase(Path.Combine(directory, "documents.db"))));
            await using var log = new DecisionLog(outage, new PolicyGrid.Runtime.DecisionLogOptions { WhenUnrecorded = "refuse", RetryInterval = TimeSpan.FromHours(1) }, TimeProvider.System, NullLogger<DecisionLog>.Instance);
            var actors = new InProcessActors(id => new PolicyFunctionActor(ActorHost.CreateForTest<PolicyFunctionActor>(new ActorTestOptions { ActorId = id }),
                _pool, _bundles, Options.Create(new FunctionActorOptions()), new TestStateManager(), decisions: log));
            var host = new ActorFunctionHost(actors, new UnusedDocuments());
            await host.DeployAsync(Spec("guarded", 1), ct);
            (await host.CallAsync("guarded", new JsonObject(), ct))["count"]!.GetValue<int>().ShouldBe(1);
            await log.FlushAsync(ct);
            outage.Down = true;
            (await host.CallAsync("guarded", new JsonObject(), ct))["count"]!.GetValue<int>().ShouldBe(2, "its record is the first one lost");
            await log.FlushAsync(ct);

            PolicyGrid.TestSupport.DecisionStoreOutage.ShouldBeItsRefusal(await Should.ThrowAsync<PolicyGridException>(() => host.CallAsync("guarded", new JsonObject(), ct)));

            outage.Down = false;
            (await Should.ThrowAsync<PolicyGridException>(() => host.CallAsync("guarded", new JsonObject(), ct))).Status.ShouldBe(503, "the log has recorded nothing since");
            await log.FlushAsync(ct);
            log.Failure.ShouldBeNull("the refused call's own record ended the failure");
            (await host.CallAsync("guarded", new JsonObject(), ct))["count"]!.GetValue<int>().ShouldBe(3, "the refused calls did not run the policy");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void A_replys_retry_after_travels_with_it_between_the_apps()
    {
        // Actor replies cross apps as JSON (UseJsonSerialization): a refusal's Retry-After must survive the trip.
        var reply = FunctionReply.Failure(new PolicyGridException(503, ErrorCodes.BackendUnavailable, "not now") { RetryAfterSeconds = 7 });
        var web = new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web);
        var travelled = System.Text.Json.JsonSerializer.Deserialize<FunctionReply>(System.Text.Json.JsonSerializer.Serialize(reply, web), web)!;

        Should.Throw<PolicyGridException>(() => travelled.Unwrap()).RetryAfterSeconds.ShouldBe(7);
    }

    /// <summary>Hands out the actors themselves, one method at a time per actor id (Dapr's turn-based guarantee).</summary>
    private sealed class InProcessActors(Func<ActorId, PolicyFunctionActor> create) : IActorProxyFactory
    {
        private readonly ConcurrentDictionary<string, (PolicyFunctionActor Actor, SemaphoreSlim Turn)> _live = new();

        public IReadOnlyList<string> Ids => [.. _live.Keys];

        /// <summary>The options of every proxy handed out (null: the factory's defaults).</summary>
        public ConcurrentQueue<ActorProxyOptions?> Options { get; } = new();

        public TActorInterface CreateActorProxy<TActorInterface>(ActorId actorId, string actorType, ActorProxyOptions? options = null) where TActorInterface : IActor
        {
            actorType.ShouldBe(FunctionActors.ActorType);
            Options.Enqueue(options);
            var (actor, turn) = _live.GetOrAdd(actorId.GetId(), _ => (create(actorId), new SemaphoreSlim(1, 1)));
            return (TActorInterface)(IPolicyFunctionActor)new Turns(actor, turn);
        }

        public object CreateActorProxy(ActorId actorId, Type actorInterfaceType, string actorType, ActorProxyOptions? options = null) => throw new NotSupportedException();
        public ActorProxy Create(ActorId actorId, string actorType, ActorProxyOptions? options = null) => throw new NotSupportedException();

        private sealed class Turns(PolicyFunctionActor actor, SemaphoreSlim turn) : IPolicyFunctionActor
        {
            // What Dapr's remoting proxy does with an exception the actor throws: only its message reaches the caller.
            private async Task<T> Run<T>(Func<Task<T>> method)
            {
                await turn.WaitAsync();
                try { return await method(); }
                catch (Exception e) { throw new ActorMethodInvocationException(e.Message, e, false); }
                finally { turn.Release(); }
            }

            public Task<FunctionReply> DeployAsync(FunctionActorDeployment deployment) => Run(() => actor.DeployAsync(deployment));
            public Task<FunctionReply> CallAsync(FunctionActorCall call) => Run(() => actor.CallAsync(call));
            public Task<FunctionReply> ManageAsync(FunctionActorManagement request) => Run(() => actor.ManageAsync(request));
            public Task<FunctionReply> SnapshotAsync() => Run(actor.SnapshotAsync);
            public Task<FunctionReply> RestartFromAsync(FunctionActorSnapshot snapshot) => Run(() => actor.RestartFromAsync(snapshot));
            public Task RemoveAsync() => Run(async () => { await actor.RemoveAsync(); return true; });
            public Task<FunctionActorStatus> StatusAsync() => Run(actor.StatusAsync);
        }
    }

    /// <summary>The adapter reads a Function document only for replica counts it has not seen deployed.</summary>
    private sealed class UnusedDocuments((string Name, int Replicas)? known = null) : IDocumentStore
    {
        public Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) =>
            Task.FromResult(known is { } k && k.Name == id && collection == Collections.Functions
                ? new StoredDocument(id, new JsonObject { ["function_id"] = id, ["function_policy_rule_uri"] = "counting:1.0-test", ["replicas"] = k.Replicas }, "1")
                : null);
        public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => throw new NotSupportedException();
        public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) => throw new NotSupportedException();
        public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => throw new NotSupportedException();
        public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => throw new NotSupportedException();
        public Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => throw new NotSupportedException();
    }
}
