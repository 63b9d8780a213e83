using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dapr.Actors;
using Dapr.Actors.Runtime;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

public sealed class PolicyFunctionActorTests : IAsyncLifetime
{
    private readonly TestBundleSource _bundles = new();
    private readonly List<PythonWorkerPool> _pools = [];
    private string _code = "";

    public ValueTask InitializeAsync()
    {
        _code = _bundles.Add("counting", CountingPolicy.Source);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var pool in _pools) await pool.DisposeAsync();
    }

    private PythonWorkerPool NewPool(bool privateTemp = true)
    {
        var pool = new PythonWorkerPool(new WorkerPoolOptions
        {
            Workers = 1,
            PrivateTemp = privateTemp,
            MemoryLimitBytes = 512L << 20,
            WorkDirectory = Path.Combine(Path.GetTempPath(), "policygrid-functions-tests", "workers-" + Guid.NewGuid().ToString("N")[..8]),
        }, NullLogger<PythonWorkerPool>.Instance);
        _pools.Add(pool);
        return pool;
    }

    private PolicyFunctionActor Actor(PythonWorkerPool pool, TestStateManager state, string id = "counter", FunctionActorOptions? options = null) =>
        new(ActorHost.CreateForTest<PolicyFunctionActor>(new ActorTestOptions { ActorId = new ActorId(id) }),
            pool, _bundles, Options.Create(options ?? new FunctionActorOptions()), state);

    private FunctionActorDeployment AllowList(string source, string name = "allow") =>
        new(name, new JsonObject { ["policy_rule_uri"] = "allow:1.0-test", ["code"] = _bundles.Add(name, source) }.ToJsonString());

    private static async Task<JsonObject> AddIp(PolicyFunctionActor actor, string ip) =>
        (await actor.ManageAsync(new FunctionActorManagement("add_ip", new JsonObject { ["ip"] = ip }.ToJsonString()))).Unwrap();

    private static async Task<JsonObject> Check(PolicyFunctionActor actor, string ip) =>
        await Call(actor, new JsonObject { ["ip"] = ip }.ToJsonString());

    private FunctionActorDeployment Deployment(string name = "counter", int step = 1) => new(name, new JsonObject
    {
        ["policy_rule_uri"] = "counting:1.0-test",
        ["code"] = _code,
        ["policy_settings"] = new JsonObject(),
        ["policy_parameters"] = new JsonObject { ["step"] = step },
    }.ToJsonString());

    private static async Task<JsonObject> Call(PolicyFunctionActor actor, string input = "{}")
    {
        var reply = await actor.CallAsync(new FunctionActorCall(input));
        return reply.Unwrap();
    }

    [Fact]
    public async Task A_call_whose_state_the_store_refuses_is_a_503_and_leaves_nothing_behind()
    {
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state);
        await actor.DeployAsync(Deployment());
        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(1);

        state.Refuse = true;
        var refused = await actor.CallAsync(new FunctionActorCall("{}"));
        refused.Ok.ShouldBeFalse();
        refused.Status.ShouldBe(503);
        refused.Message.ShouldContain("the actor state store did not take what the call changed");

        // Counted from what was saved, as the same actor reactivated would: the refused call left no trace.
        state.Refuse = false;
        var next = await Call(actor);
        next["count"]!.GetValue<int>().ShouldBe(2);
        next["evals"]!.GetValue<int>().ShouldBe(2);
        var reactivated = await Call(Actor(NewPool(), new TestStateManager(state.Saved)));
        reactivated["count"]!.GetValue<int>().ShouldBe(3);
    }

    [Fact]
    public async Task A_turn_whose_actor_state_cannot_be_read_is_the_actor_s_503_not_an_unreachable_app()
    {
        // After a refused save the actor reads its state again on its next turn; with the store still down that read threw
        // out of the actor method: the caller heard "the functions app could not be reached" and the decision log had the
        // call twice (the actor's 500 "internal", the registry's 503).
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state);
        await actor.DeployAsync(Deployment());
        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(1);
        state.Refuse = true;
        (await actor.CallAsync(new FunctionActorCall("{}"))).Status.ShouldBe(503);

        state.RefuseReads = true;
        var refused = await actor.CallAsync(new FunctionActorCall("{}"));
        (refused.Ok, refused.Status, refused.Code).ShouldBe((false, 503, "backend_unavailable"));
        refused.Message.ShouldContain("the actor state store could not be read");
        var managed = await actor.ManageAsync(new FunctionActorManagement("set", new JsonObject { ["count"] = 100 }.ToJsonString()));
        managed.Status.ShouldBe(503);

        (state.Refuse, state.RefuseReads) = (false, false);
        var next = await Call(actor);
        next["count"]!.GetValue<int>().ShouldBe(2, "the actor goes on from what the store holds");
    }

    [Fact]
    public async Task A_call_or_management_action_of_an_actor_whose_policy_is_retired_does_not_run()
    {
        // The graph workflow calls actors directly, and a call may wait for its turn: the actor itself asks the documents.
        var directory = Directory.CreateTempSubdirectory("pg-actor-retired-").FullName;
        try
        {
            var documents = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(directory, "documents.db")));
            var policy = new JsonObject
            {
                ["name"] = "counting", ["version"] = "1.0", ["release_tag"] = "test", ["code"] = _code, ["type"] = "python_class_v1",
            };
            await documents.UpsertAsync(Collections.Policies, "counting:1.0-test", (JsonObject)policy.DeepClone(), TestContext.Current.CancellationToken);
            var state = new TestStateManager();
            var actor = new PolicyFunctionActor(ActorHost.CreateForTest<PolicyFunctionActor>(new ActorTestOptions { ActorId = new ActorId("counter") }),
                NewPool(), _bundles, Options.Create(new FunctionActorOptions()), state, new PolicyCatalog(documents));
            await actor.DeployAsync(Deployment());
            (await Call(actor))["count"]!.GetValue<int>().ShouldBe(1);

            policy["status"] = "retired";
            await documents.UpsertAsync(Collections.Policies, "counting:1.0-test", (JsonObject)policy.DeepClone(), TestContext.Current.CancellationToken);
            var call = await actor.CallAsync(new FunctionActorCall("{}"));
            var managed = await actor.ManageAsync(new FunctionActorManagement("set", new JsonObject { ["count"] = 100 }.ToJsonString()));

            call.Ok.ShouldBeFalse("a retired policy ran in its function's actor");
            call.Status.ShouldBe(410);
            call.Code.ShouldBe("retired");
            call.Message.ShouldContain("call of function counter not run");
            managed.Status.ShouldBe(410);
            policy["status"] = "active";
            await documents.UpsertAsync(Collections.Policies, "counting:1.0-test", (JsonObject)policy.DeepClone(), TestContext.Current.CancellationToken);
            (await Call(actor))["count"]!.GetValue<int>().ShouldBe(2, "the refused call and management changed nothing");

            // A policy deleted since (force) leaves the deployed snapshot running.
            await documents.DeleteAsync(Collections.Policies, "counting:1.0-test", null, TestContext.Current.CancellationToken);
            (await Call(actor))["count"]!.GetValue<int>().ShouldBe(3);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task A_call_or_action_that_waited_for_a_worker_busy_with_another_actor_does_not_run_once_the_policy_is_retired()
    {
        // The turn's check saw the policy active, then the call waited in the app's pool for the policy's only worker (busy
        // with another function of the same policy); the policy was retired meanwhile. It ran anyway, once the worker was free.
        var ct = TestContext.Current.CancellationToken;
        var directory = Directory.CreateTempSubdirectory("pg-actor-queued-retired-").FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(directory, (UnixFileMode)0b111_101_101);
        try
        {
            var documents = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(directory, "documents.db")));
            var policy = new JsonObject
            {
                ["name"] = "counting", ["version"] = "1.0", ["release_tag"] = "test", ["code"] = _code, ["type"] = "python_class_v1",
            };
            async Task SetStatus(string status)
            {
                policy["status"] = status;
                await documents.UpsertAsync(Collections.Policies, "counting:1.0-test", (JsonObject)policy.DeepClone(), ct);
            }
            await SetStatus("active");
            var pool = NewPool(privateTemp: false);
            var catalog = new PolicyCatalog(documents);
            PolicyFunctionActor ActorOf(string id) => new(ActorHost.CreateForTest<PolicyFunctionActor>(new ActorTestOptions { ActorId = new ActorId(id) }),
                pool, _bundles, Options.Create(new FunctionActorOptions()), new TestStateManager(), catalog);
            var slow = ActorOf("slow");
            var queued = ActorOf("queued");
            await slow.DeployAsync(Deployment("slow"));
            await queued.DeployAsync(Deployment("queued"));
            async Task Until(Func<bool> condition, string what)
            {
                var until = DateTime.UtcNow.AddSeconds(20);
                while (!condition() && DateTime.UtcNow < until) await Task.Delay(5, ct);
                condition().ShouldBeTrue(what);
            }

            var release = Path.Combine(directory, "release");
            var held = slow.CallAsync(new FunctionActorCall(new JsonObject { ["hold"] = release }.ToJsonString()));
            // Taken from the queue (sent, or waiting for its worker to start), not merely admitted: a call queued while it is
            // still there goes in the same batch and would run behind it whatever the test then does.
            await Until(() => pool.Status is { Admitted: 1, Queued: 0 }, "the slow actor's call should hold the only worker");
            var call = Task.Run(() => queued.CallAsync(new FunctionActorCall("{}")), ct);
            await Until(() => pool.Status.Queued == 1, "the call should be waiting for the worker");
            await SetStatus("retired");
            File.WriteAllText(release, "go");

            (await held).Ok.ShouldBeTrue("the call already running ends as it began");
            var refused = await call;
            refused.Ok.ShouldBeFalse("a call that waited for a worker ran after its policy was retired");
            (refused.Status, refused.Code).ShouldBe((410, "retired"));
            refused.Message.ShouldContain("function 'queued' runs policy 'counting:1.0-test', which was retired while this call waited for a policy worker");

            // The same for a management action.
            await SetStatus("active");
            File.Delete(release);
            held = slow.CallAsync(new FunctionActorCall(new JsonObject { ["hold"] = release }.ToJsonString()));
            await Until(() => pool.Status is { Admitted: 1, Queued: 0 }, "the slow actor's call should hold the only worker again");
            var managed = Task.Run(() => queued.ManageAsync(new FunctionActorManagement("set", new JsonObject { ["count"] = 100 }.ToJsonString())), ct);
            await Until(() => pool.Status.Queued == 1, "the action should be waiting for the worker");
            await SetStatus("retired");
            File.WriteAllText(release, "go");
            (await held).Ok.ShouldBeTrue();
            (await managed).Status.ShouldBe(410);

            // Neither ran: the actor's next call is its first.
            await SetStatus("active");
            var next = await Call(queued);
            next["count"]!.GetValue<int>().ShouldBe(1);
            next["evals"]!.GetValue<int>().ShouldBe(1);
            (await queued.StatusAsync()).Calls.ShouldBe(1);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task A_reactivated_actor_whose_policy_is_retired_answers_410_without_replaying_its_journal()
    {
        // The retired check came after the journal's replay: the retired policy's management ran again on a fresh instance,
        // and a replay that failed answered its own 422 ("could not apply management ...") on every call instead of the 410.
        var ct = TestContext.Current.CancellationToken;
        var directory = Directory.CreateTempSubdirectory("pg-actor-retired-replay-").FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(directory, (UnixFileMode)0b111_101_101);
        try
        {
            var documents = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(directory, "documents.db")));
            var code = _bundles.Add("replayed", """
                import os

                class AIOSv1PolicyRule:
                    def __init__(self, rule_id, settings, parameters):
                        self.total = 0

                    def eval(self, parameters, input_data, context):
                        return {"total": self.total}

                    def management(self, action, data):
                        if os.path.exists(data["unless"]):
                            raise ValueError("ran on a retired policy")
                        self.total += 1
                        return {"total": self.total}
                """);
            var policy = new JsonObject { ["name"] = "replayed", ["version"] = "1.0", ["release_tag"] = "test", ["code"] = code, ["type"] = "python_class_v1" };
            await documents.UpsertAsync(Collections.Policies, "replayed:1.0-test", (JsonObject)policy.DeepClone(), ct);
            var catalog = new PolicyCatalog(documents);
            PolicyFunctionActor ActorOn(TestStateManager state) => new(ActorHost.CreateForTest<PolicyFunctionActor>(new ActorTestOptions { ActorId = new ActorId("journaled") }),
                NewPool(privateTemp: false), _bundles, Options.Create(new FunctionActorOptions()), state, catalog);
            var state = new TestStateManager();
            var actor = ActorOn(state);
            (await actor.DeployAsync(new FunctionActorDeployment("journaled", new JsonObject { ["policy_rule_uri"] = "replayed:1.0-test", ["code"] = code }.ToJsonString()))).Ok.ShouldBeTrue();
            var marker = Path.Combine(directory, "retired");
            (await actor.ManageAsync(new FunctionActorManagement("add", new JsonObject { ["unless"] = marker }.ToJsonString()))).Unwrap()["total"]!.GetValue<int>().ShouldBe(1);

            // Retired; the actor is reactivated (another pod, or idle deactivation) and must replay its journal before it runs anything.
            File.WriteAllText(marker, "");
            policy["status"] = "retired";
            await documents.UpsertAsync(Collections.Policies, "replayed:1.0-test", (JsonObject)policy.DeepClone(), ct);
            var reactivated = ActorOn(new TestStateManager(state.Saved));

            var call = await reactivated.CallAsync(new FunctionActorCall("{}"));
            (call.Status, call.Code).ShouldBe((410, "retired"), call.Message);
            call.Message.ShouldContain("call of function journaled not run");
            var managed = await reactivated.ManageAsync(new FunctionActorManagement("add", new JsonObject { ["unless"] = marker }.ToJsonString()));
            (managed.Status, managed.Code).ShouldBe((410, "retired"), managed.Message);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task A_call_of_an_actor_whose_policy_status_cannot_be_read_fails_and_does_not_run()
    {
        // The status check failed open: with the policy store unreachable, a retired policy's function ran on.
        var documents = new UnreachableDocuments();
        var state = new TestStateManager();
        var actor = new PolicyFunctionActor(ActorHost.CreateForTest<PolicyFunctionActor>(new ActorTestOptions { ActorId = new ActorId("counter") }),
            NewPool(), _bundles, Options.Create(new FunctionActorOptions()), state, new PolicyCatalog(documents));
        await actor.DeployAsync(Deployment());

        var call = await actor.CallAsync(new FunctionActorCall("{}"));

        call.Ok.ShouldBeFalse("the function ran although its policy's status could not be read");
        call.Status.ShouldBe(503);
        call.Message.ShouldContain("the policy store is unreachable");
        documents.Reachable = true;
        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(1, "the refused call changed nothing");
    }

    // Policies whose store answers 503 until Reachable is set; then the one counting policy, active.
    private sealed class UnreachableDocuments : IDocumentStore
    {
        public bool Reachable { get; set; }

        public Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) => Reachable
            ? Task.FromResult<StoredDocument?>(new StoredDocument(id, new JsonObject
                {
                    ["name"] = "counting", ["version"] = "1.0", ["release_tag"] = "test", ["code"] = "bundle://sha256/0", ["type"] = "python_class_v1",
                }, "1"))
            : throw new PolicyGrid.Core.Errors.PolicyGridException(503, PolicyGrid.Core.Errors.ErrorCodes.BackendUnavailable, "the policy store is unreachable");
        public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => throw new NotSupportedException();
        public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) => throw new NotSupportedException();
        public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => throw new NotSupportedException();
        public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => throw new NotSupportedException();
        public Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => throw new NotSupportedException();
    }

    [Fact]
    public async Task Answers_that_are_no_dict_are_answered_as_type_2_answers_them_and_nothing_is_journalled()
    {
        var actor = Actor(NewPool(), new TestStateManager(), "loose");
        (await actor.DeployAsync(AllowList("""
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    self.total = 0
                def eval(self, parameters, input_data, context):
                    return None if input_data.get("none") else {"total": self.total}
                def management(self, action, data):
                    self.total += 1
                    return None if action == "none" else [self.total]
            """, "loose"))).Ok.ShouldBeTrue();

        var none = await actor.ManageAsync(new FunctionActorManagement("none", "{}"));
        (none.Ok, none.OutputJson).ShouldBe((true, "{}")); // was {"result":null}
        var list = await actor.ManageAsync(new FunctionActorManagement("list", "{}"));
        (list.Ok, list.Status, list.Code, list.Message).ShouldBe((false, 422, "policy_error", "function loose: management 'list' returned a list, not a dict"));
        var eval = await actor.CallAsync(new FunctionActorCall("""{"none": true}"""));
        (eval.Status, eval.Message).ShouldBe((422, "function loose: eval returned None, not a dict"));

        // The class keeps no state: the failed action's instance is dropped and rebuilt from the journal, which holds
        // only the action that succeeded (the instance kept what both did: 2, and 1 after a reactivation).
        (await Call(actor))["total"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task A_deployed_actor_counts_one_two_three_and_saves_after_every_call()
    {
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state);
        await actor.DeployAsync(Deployment());

        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(1);
        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(2);
        var third = await Call(actor);

        third["count"]!.GetValue<int>().ShouldBe(3);
        third["evals"]!.GetValue<int>().ShouldBe(3);
        JsonNode.Parse(JsonSerializer.Deserialize<string>(state.Saved["state"])!)!["count"]!.GetValue<int>().ShouldBe(3);
        JsonNode.Parse(JsonSerializer.Deserialize<string>(state.Saved["context"])!)!["evals"]!.GetValue<int>().ShouldBe(3);
    }

    [Fact]
    public async Task Management_that_breaks_the_policys_management_commands_schema_is_a_400_reply_and_runs_nothing()
    {
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state);
        var policy = JsonNode.Parse(Deployment().PolicyJson)!.AsObject();
        policy["management_commands_schema"] = JsonNode.Parse("""[{"name": "set", "schema": {"count": {"type": "integer", "required": true}}}]""");
        await actor.DeployAsync(new FunctionActorDeployment("counter", policy.ToJsonString()));
        var saves = state.Saves;

        var unknown = await actor.ManageAsync(new FunctionActorManagement("reset", "{}"));
        unknown.Status.ShouldBe(400);
        unknown.Message.ShouldContain("'reset' is not a management command");
        var bad = await actor.ManageAsync(new FunctionActorManagement("set", """{"count": "ten"}"""));
        bad.Status.ShouldBe(400);
        bad.Message.ShouldBe("data.count: must be an integer, not a string");
        state.Saves.ShouldBe(saves, "a refused call saves nothing");
        (await actor.ManageAsync(new FunctionActorManagement("set", """{"count": 5}"""))).Ok.ShouldBeTrue();
    }

    [Fact]
    public async Task A_call_whose_input_breaks_the_policy_input_schema_is_a_400_reply_and_runs_nothing()
    {
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state);
        var policy = JsonNode.Parse(Deployment().PolicyJson)!.AsObject();
        policy["policy_input_schema"] = new JsonObject { ["ip"] = new JsonObject { ["type"] = "string", ["required"] = true, ["pattern"] = "^[0-9.]+$" } };
        await actor.DeployAsync(new FunctionActorDeployment("counter", policy.ToJsonString()));
        var saves = state.Saves;

        foreach (var (input, expected) in new[]
        {
            ("""{"ip": "not-an-ip"}""", "input_data.ip: does not match ^[0-9.]+$"),
            ("{}", "input_data.ip: is required"),
            ("""{"ip": null}""", "input_data.ip: is required"),
            ("[1, 2]", "input_data: must be an object, not an array"),
        })
        {
            var reply = await actor.CallAsync(new FunctionActorCall(input));

            reply.Ok.ShouldBeFalse(input);
            reply.Status.ShouldBe(400);
            reply.Code.ShouldBe("validation_failed");
            reply.Message.ShouldBe(expected);
        }

        state.Saves.ShouldBe(saves, "a refused call saves nothing");
        (await actor.StatusAsync()).Calls.ShouldBe(0);
        var good = await Call(actor, """{"ip": "10.0.0.1"}""");
        good["count"]!.GetValue<int>().ShouldBe(1);
        good["evals"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task After_deactivation_and_a_new_worker_pool_the_actor_continues_from_its_saved_state()
    {
        var saved = new ConcurrentDictionary<string, string>();
        var first = Actor(NewPool(), new TestStateManager(saved));
        await first.DeployAsync(Deployment());
        await Call(first);
        await Call(first);

        // A new process: a new pool (no warm instance) and a new actor object over the same saved state.
        var again = Actor(NewPool(), new TestStateManager(saved));
        var next = await Call(again);

        next["count"]!.GetValue<int>().ShouldBe(3);
        next["evals"]!.GetValue<int>().ShouldBe(3);
        (await again.StatusAsync()).ShouldBe(new FunctionActorStatus(true, "counter", 3));
    }

    [Fact]
    public async Task Management_of_a_class_without_get_state_survives_deactivation_and_a_new_worker_pool()
    {
        var saved = new ConcurrentDictionary<string, string>();
        var first = Actor(NewPool(), new TestStateManager(saved), "allow");
        await first.DeployAsync(AllowList(CountingPolicy.AllowList));
        await AddIp(first, "10.1.1.1");
        await AddIp(first, "10.2.2.2");
        (await Check(first, "10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();

        // Dapr deactivated the actor (idle timeout, rebalancing, a restarted pod): a new actor object over the same state.
        var again = Actor(NewPool(), new TestStateManager(saved), "allow");
        var next = await Check(again, "10.1.1.1");

        next["allowed"]!.GetValue<bool>().ShouldBeTrue("the reactivated actor lost the management actions");
        next["evals"]!.GetValue<int>().ShouldBe(1, "the instance was recreated from the deployment");
        (await Check(again, "10.2.2.2"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        (await Check(again, "10.3.3.3"))["allowed"]!.GetValue<bool>().ShouldBeFalse();
    }

    [Fact]
    public async Task An_instance_the_worker_pool_recreates_behind_the_actors_back_gets_the_management_actions_too()
    {
        var pool = NewPool();
        var actor = Actor(pool, new TestStateManager(), "evicted");
        await actor.DeployAsync(AllowList(CountingPolicy.AllowList, "evicted"));
        await AddIp(actor, "10.1.1.1");
        (await Check(actor, "10.1.1.1"))["evals"]!.GetValue<int>().ShouldBe(1);

        // The pool drops the instance (evicted for another policy's workers, or its worker replaced): the actor is not told.
        await pool.ReleaseAsync(actor.InstanceKey, TestContext.Current.CancellationToken);
        var next = await Check(actor, "10.1.1.1");

        next["allowed"]!.GetValue<bool>().ShouldBeTrue("the recreated instance answered without the management actions");
        next["evals"]!.GetValue<int>().ShouldBe(1, "it was recreated from the deployment");
        (await actor.StatusAsync()).Calls.ShouldBe(2, "the call counts once");
        (await AddIp(actor, "10.2.2.2"))["ips"]!.AsArray().Select(ip => ip!.GetValue<string>()).ShouldBe(["10.1.1.1", "10.2.2.2"]);
    }

    [Fact]
    public async Task An_instance_the_pool_recreates_whose_first_call_raises_for_lack_of_the_journal_gets_it_back_and_answers()
    {
        var pool = NewPool();
        var actor = Actor(pool, new TestStateManager(), "strict");
        await actor.DeployAsync(AllowList(CountingPolicy.StrictAllowList, "strict"));
        await AddIp(actor, "10.1.1.1");
        (await Check(actor, "10.1.1.1"))["evals"]!.GetValue<int>().ShouldBe(1);

        // Recreated from the deployment, the instance's first call raises ("no allowlist yet"): that was the answer, and
        // the instance went on without the journal.
        await pool.ReleaseAsync(actor.InstanceKey, TestContext.Current.CancellationToken);
        var next = await Check(actor, "10.1.1.1");

        next["allowed"]!.GetValue<bool>().ShouldBeTrue();
        next["evals"]!.GetValue<int>().ShouldBe(1, "the answer comes from a fresh instance with the journal replayed");
        (await actor.StatusAsync()).Calls.ShouldBe(2, "the call counts once");

        // A call that raises on its own still answers its error, once, from an instance that has the journal.
        await pool.ReleaseAsync(actor.InstanceKey, TestContext.Current.CancellationToken);
        var failed = await actor.CallAsync(new FunctionActorCall("""{"ip": "10.1.1.1", "fail": true}"""));
        (failed.Ok, failed.Status, failed.Code).ShouldBe((false, 422, "policy_error"));
        failed.Message.ShouldContain("asked to fail");
        var after = await Check(actor, "10.1.1.1");
        after["allowed"]!.GetValue<bool>().ShouldBeTrue("the instance the failed call left kept no management actions");
        // What the failed call changed on the instance (its count) goes with it: a fresh one replays the journal.
        after["evals"]!.GetValue<int>().ShouldBe(1, "the failed call left its change on the instance");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_replica_restarted_from_another_keeps_what_it_took_after_deactivation(bool keepsState)
    {
        var deployment = AllowList(keepsState ? CountingPolicy.AllowListKeepingState : CountingPolicy.AllowList, keepsState ? "seed" : "plain-seed");
        var first = Actor(NewPool(), new TestStateManager(), "seed~0");
        await first.DeployAsync(deployment);
        await AddIp(first, "10.1.1.1");
        var saved = new ConcurrentDictionary<string, string>();
        var second = Actor(NewPool(), new TestStateManager(saved), "seed~1");
        await second.DeployAsync(deployment);
        (await Check(second, "10.9.9.9"))["evals"]!.GetValue<int>().ShouldBe(1);

        var snapshot = (await first.SnapshotAsync()).Unwrap();
        (await second.RestartFromAsync(new FunctionActorSnapshot("add_ip", snapshot.ToJsonString()))).Ok.ShouldBeTrue();

        // Dapr deactivated it: a new actor object over the same state.
        var again = Actor(NewPool(), new TestStateManager(saved), "seed~1");
        var next = await Check(again, "10.1.1.1");
        next["allowed"]!.GetValue<bool>().ShouldBeTrue();
        // From replica 0's state (no call served), or from the deployment with replica 0's journal replayed.
        next["evals"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task An_instance_the_pool_drops_while_it_replays_the_journal_replays_it_afresh_each_entry_once()
    {
        // Dropped between two entries of a replay (evicted, a replaced worker), the instance came back without the entries
        // before and the replay went on there: 1, 10, 100 added up to 110 and the actor answered without the first.
        var saved = new ConcurrentDictionary<string, string>();
        var first = Actor(NewPool(), new TestStateManager(saved), "adder");
        await first.DeployAsync(new FunctionActorDeployment("adder",
            new JsonObject { ["policy_rule_uri"] = "adder:1.0-test", ["code"] = _bundles.Add("adder", CountingPolicy.Adder) }.ToJsonString()));
        foreach (var data in new[] { """{"n": 1, "slow": true}""", """{"n": 10}""", """{"n": 100}""" })
            (await first.ManageAsync(new FunctionActorManagement("add", data))).Unwrap();

        // Reactivated: it replays the journal before the call; while the first (slow) entry runs, the pool drops the instance.
        var pool = NewPool();
        var again = Actor(pool, new TestStateManager(saved), "adder");
        var before = pool.RoundTrips;
        var call = again.CallAsync(new FunctionActorCall("{}"));
        while (pool.RoundTrips == before && !call.IsCompleted) await Task.Delay(5, TestContext.Current.CancellationToken);
        await pool.ReleaseAsync(again.InstanceKey, TestContext.Current.CancellationToken);

        (await call).Unwrap()["total"]!.GetValue<int>().ShouldBe(111);
        (await Call(again))["total"]!.GetValue<int>().ShouldBe(111);
    }

    [Fact]
    public async Task A_management_action_that_fails_on_replay_fails_the_calls_naming_it_until_it_applies_again()
    {
        // add_ip refuses while a file "disabled" lies next to the bundle's code (a bundle of its own: the source is unique).
        var source = $"# {Guid.NewGuid():N}\n" + CountingPolicy.AllowList.Replace("if action == \"add_ip\":",
            "if action == \"add_ip\":\n            if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), \"..\", \"disabled\")):\n                raise ValueError(\"add_ip is disabled\")",
            StringComparison.Ordinal);
        var deployment = AllowList(source, "fickle");
        var disabled = Path.Combine((await _bundles.GetAsync("test://fickle", null, TestContext.Current.CancellationToken)).Root, "disabled");
        var saved = new ConcurrentDictionary<string, string>();
        var pool = NewPool();
        var first = Actor(pool, new TestStateManager(saved), "fickle");
        await first.DeployAsync(deployment);
        await AddIp(first, "10.1.1.1");

        // Reactivated while the action cannot apply: its calls fail naming the entry rather than answer without it.
        await File.WriteAllTextAsync(disabled, "", TestContext.Current.CancellationToken);
        var again = Actor(pool, new TestStateManager(saved), "fickle");
        var refused = await again.CallAsync(new FunctionActorCall("""{"ip": "10.1.1.1"}"""));

        (refused.Ok, refused.Status, refused.Code).ShouldBe((false, 422, "policy_error"));
        refused.Message.ShouldContain("could not apply management 'add_ip' (journal entry 1 of 1)");
        refused.Message.ShouldContain("add_ip is disabled");
        (await again.StatusAsync()).Calls.ShouldBe(0, "the call did not run");

        File.Delete(disabled);
        var next = await Check(again, "10.1.1.1");
        next["allowed"]!.GetValue<bool>().ShouldBeTrue();
        next["evals"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task A_class_with_get_state_keeps_no_journal_and_a_redeployment_forgets_it()
    {
        var saved = new ConcurrentDictionary<string, string>();
        var keeping = Actor(NewPool(), new TestStateManager(saved), "keeping");
        await keeping.DeployAsync(AllowList(CountingPolicy.AllowListKeepingState, "keeping"));
        await AddIp(keeping, "10.1.1.1");
        saved.Keys.ShouldNotContain("journal", "the saved state already includes the action");
        (await Check(Actor(NewPool(), new TestStateManager(saved), "keeping"), "10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();

        var plain = new ConcurrentDictionary<string, string>();
        var actor = Actor(NewPool(), new TestStateManager(plain), "plain");
        await actor.DeployAsync(AllowList(CountingPolicy.AllowList, "plain"));
        await AddIp(actor, "10.1.1.1");
        plain.Keys.ShouldContain("journal");
        (await actor.DeployAsync(AllowList(CountingPolicy.AllowList, "plain"))).Ok.ShouldBeTrue();

        plain.Keys.ShouldNotContain("journal");
        (await Check(Actor(NewPool(), new TestStateManager(plain), "plain"), "10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeFalse();
    }

    [Fact]
    public async Task Past_the_journal_limit_management_of_a_class_without_get_state_is_a_409_and_runs_nothing()
    {
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state, "small", new FunctionActorOptions { MaxJournalEntries = 2 });
        await actor.DeployAsync(AllowList(CountingPolicy.AllowList, "small"));
        await AddIp(actor, "10.1.1.1");
        await AddIp(actor, "10.2.2.2");
        var saves = state.Saves;

        var full = await actor.ManageAsync(new FunctionActorManagement("add_ip", """{"ip": "10.3.3.3"}"""));

        (full.Ok, full.Status, full.Code).ShouldBe((false, 409, "conflict"));
        full.Message.ShouldContain("MaxJournalEntries");
        state.Saves.ShouldBe(saves);
        (await Check(actor, "10.3.3.3"))["allowed"]!.GetValue<bool>().ShouldBeFalse();

        // A class with get_state journals nothing, so no limit ever refuses its management.
        var keeping = Actor(NewPool(), new TestStateManager(), "keeps", new FunctionActorOptions { MaxJournalEntries = 0 });
        await keeping.DeployAsync(AllowList(CountingPolicy.AllowListKeepingState, "keeps"));
        for (var i = 1; i <= 3; i++) await AddIp(keeping, $"10.0.0.{i}");
    }

    [Fact]
    public async Task A_command_the_policy_declares_read_only_is_not_journalled_and_passes_the_limit()
    {
        // A status action polled by monitoring filled the journal of a class without get_state, and past the limit every
        // management action answered 409.
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state, "polled", new FunctionActorOptions { MaxJournalEntries = 1 });
        var source = $"# {Guid.NewGuid():N}\n" + CountingPolicy.AllowList.Replace("if action == \"add_ip\":",
            "if action == \"list_ips\":\n            return {\"ips\": self.ips}\n        if action == \"add_ip\":");
        var snapshot = new JsonObject
        {
            ["policy_rule_uri"] = "allow:1.0-test", ["code"] = _bundles.Add("polled", source),
            ["management_commands_schema"] = new JsonArray(
                new JsonObject { ["name"] = "add_ip" },
                new JsonObject { ["name"] = "list_ips", ["read_only"] = true }),
        };
        (await actor.DeployAsync(new FunctionActorDeployment("polled", snapshot.ToJsonString()))).Ok.ShouldBeTrue();
        await AddIp(actor, "10.1.1.1");

        for (var i = 0; i < 3; i++)
        {
            var listed = (await actor.ManageAsync(new FunctionActorManagement("list_ips", "{}"))).Unwrap();
            listed["ips"]!.AsArray().Select(n => n!.GetValue<string>()).ShouldBe(["10.1.1.1"]);
        }

        var more = await actor.ManageAsync(new FunctionActorManagement("add_ip", """{"ip": "10.2.2.2"}"""));
        (more.Ok, more.Status).ShouldBe((false, 409), "the journal holds the one add_ip, not the reads");
    }

    [Fact]
    public async Task A_redeployment_that_cannot_load_leaves_the_earlier_one_with_its_management_actions()
    {
        var actor = Actor(NewPool(), new TestStateManager(), "stay");
        await actor.DeployAsync(AllowList(CountingPolicy.AllowList, "stay"));
        await AddIp(actor, "10.1.1.1");

        (await actor.DeployAsync(new FunctionActorDeployment("stay", new JsonObject
        {
            ["policy_rule_uri"] = "broken:1.0-test",
            ["code"] = _bundles.Add("broken", CountingPolicy.FailsToLoad),
        }.ToJsonString()))).Status.ShouldBe(422);

        (await Check(actor, "10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue("the earlier deployment's instance came back without add_ip");
    }

    [Fact]
    public async Task A_call_is_one_worker_round_trip_and_a_turn_that_changes_nothing_saves_nothing()
    {
        var pool = NewPool();
        var state = new TestStateManager();
        var actor = Actor(pool, state);
        await actor.DeployAsync(Deployment());
        await Call(actor);

        var trips = pool.RoundTrips;
        var saves = state.Saves;
        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(2);
        (pool.RoundTrips - trips).ShouldBe(1, "eval and get_state share one round trip");
        (state.Saves - saves).ShouldBe(1);

        (await actor.ManageAsync(new FunctionActorManagement("peek", "{}"))).Unwrap()["count"]!.GetValue<int>().ShouldBe(2);
        (state.Saves - saves).ShouldBe(1, "peek changed neither context, state nor calls");
        JsonNode.Parse(JsonSerializer.Deserialize<string>(state.Saved["state"])!)!["count"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task Management_reaches_the_live_instance()
    {
        var actor = Actor(NewPool(), new TestStateManager());
        await actor.DeployAsync(Deployment(step: 2));
        await Call(actor);

        (await actor.ManageAsync(new FunctionActorManagement("peek", "{}"))).Unwrap()["count"]!.GetValue<int>().ShouldBe(2);
        (await actor.ManageAsync(new FunctionActorManagement("set", """{"count": 100}"""))).Unwrap()["count"]!.GetValue<int>().ShouldBe(100);
        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(102);
    }

    [Fact]
    public async Task A_set_state_that_raises_after_deactivation_is_a_422_reply_naming_set_state_and_the_saved_state_stays()
    {
        var saved = new ConcurrentDictionary<string, string>();
        var first = Actor(NewPool(), new TestStateManager(saved), "touchy");
        await first.DeployAsync(new FunctionActorDeployment("touchy", new JsonObject
        {
            ["policy_rule_uri"] = "touchy:1.0-test",
            ["code"] = _bundles.Add("touchy", CountingPolicy.CannotRestore),
        }.ToJsonString()));
        (await Call(first))["count"]!.GetValue<int>().ShouldBe(1);
        var before = saved.ToDictionary();

        var again = Actor(NewPool(), new TestStateManager(saved), "touchy");
        var reply = await again.CallAsync(new FunctionActorCall("{}"));

        // It used to answer the bare "RuntimeError: cannot restore", as if eval had raised it.
        (reply.Ok, reply.Status, reply.Code).ShouldBe((false, 422, "policy_error"));
        reply.Message.ShouldBe("function touchy (actor touchy) could not restore its state with set_state() after its instance was recreated: " +
            "RuntimeError: cannot restore; it tries again before its next call");
        saved.ToDictionary().ShouldBe(before);
    }

    [Fact]
    public async Task A_policy_error_comes_back_as_a_422_reply_and_changes_nothing()
    {
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state);
        await actor.DeployAsync(Deployment());
        await Call(actor);

        var reply = await actor.CallAsync(new FunctionActorCall("""{"fail": true}"""));

        reply.Ok.ShouldBeFalse();
        reply.Status.ShouldBe(422);
        reply.Code.ShouldBe("policy_error");
        reply.Message.ShouldContain("asked to fail");
        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task A_get_state_answering_no_dict_is_a_422_reply_and_leaves_no_trace()
    {
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state, "list-state");
        (await actor.DeployAsync(AllowList(CountingPolicy.ListState, "list-state"))).Ok.ShouldBeTrue();
        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(1);

        var failed = await actor.CallAsync(new FunctionActorCall("""{"shape": "list"}"""));

        (failed.Status, failed.Code, failed.Message).ShouldBe((422, "policy_error", "get_state() after eval answered a list, not a dict"));
        JsonSerializer.Deserialize<string>(state.Saved["state"]).ShouldBe("""{"count":1}""");
        var next = await Call(actor);
        (next["count"]!.GetValue<int>(), next["evals"]!.GetValue<int>()).ShouldBe((2, 2));
        JsonSerializer.Deserialize<string>(state.Saved["state"]).ShouldBe("""{"count":2}""");
    }

    [Fact]
    public async Task A_call_or_management_that_raises_after_changing_the_instance_leaves_no_trace_in_its_state()
    {
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state, "halfway");
        var code = _bundles.Add("halfway", CountingPolicy.Halfway);
        await actor.DeployAsync(new FunctionActorDeployment("halfway", new JsonObject { ["policy_rule_uri"] = "halfway:1.0-test", ["code"] = code }.ToJsonString()));
        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(1);

        (await actor.CallAsync(new FunctionActorCall("""{"fail": true}"""))).Status.ShouldBe(422);
        (await actor.ManageAsync(new FunctionActorManagement("bump", "{}"))).Status.ShouldBe(422);

        var next = await Call(actor);
        next["count"]!.GetValue<int>().ShouldBe(2, "the failed call and management changed the live instance");
        next["evals"]!.GetValue<int>().ShouldBe(2);
        JsonNode.Parse(JsonSerializer.Deserialize<string>(state.Saved["state"])!)!["count"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task A_failed_call_or_management_of_a_class_without_get_state_leaves_the_instance_as_a_reactivation_rebuilds_it()
    {
        // The actor kept the instance of a class without get_state after a failure: what add_ip appended before it raised
        // (or answered a list) stayed live, though the journal never had it, until Dapr reactivated the actor.
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state, "halfway-allow");
        (await actor.DeployAsync(AllowList(CountingPolicy.HalfwayAllowList, "halfway-allow"))).Ok.ShouldBeTrue();
        static Task<FunctionReply> Add(PolicyFunctionActor on, string ip, string? how = null)
        {
            var data = new JsonObject { ["ip"] = ip };
            if (how is not null) data[how] = true;
            return on.ManageAsync(new FunctionActorManagement("add_ip", data.ToJsonString()));
        }
        static async Task<(string Ips, int Marks)> Seen(PolicyFunctionActor on)
        {
            var answer = await Call(on);
            return (answer["ips"]!.ToJsonString(), answer["marks"]!.GetValue<int>());
        }
        (await Add(actor, "10.0.0.1")).Ok.ShouldBeTrue();

        var raised = await Add(actor, "10.0.0.2", "fail");
        (raised.Status, raised.Code).ShouldBe((422, "policy_error"));
        raised.Message.ShouldContain("added 10.0.0.2, then failed");
        (await Seen(actor)).ShouldBe(("[\"10.0.0.1\"]", 0), "a management action that raised after it changed the instance left its change");

        var refused = await Add(actor, "10.0.0.3", "refuse");
        (refused.Status, refused.Message).ShouldBe((422, "function halfway-allow: management 'add_ip' returned a list, not a dict"));
        (await Seen(actor)).ShouldBe(("[\"10.0.0.1\"]", 0), "a management action whose answer was refused left its change");

        var failedCall = await actor.CallAsync(new FunctionActorCall("""{"mark": true, "fail": true}"""));
        (failedCall.Status, failedCall.Code).ShouldBe((422, "policy_error"));
        var refusedCall = await actor.CallAsync(new FunctionActorCall("""{"mark": true, "refuse": true}"""));
        (refusedCall.Status, refusedCall.Message).ShouldBe((422, "function halfway-allow: eval returned None, not a dict"));
        (await Seen(actor)).ShouldBe(("[\"10.0.0.1\"]", 0), "an eval that raised (or answered None) after it changed self left its change");

        // Reactivated (a restarted pod, IdleTimeout): the journal rebuilds exactly what the live instance held.
        var reactivated = Actor(NewPool(), new TestStateManager(state.Saved), "halfway-allow");
        (await Seen(reactivated)).ShouldBe(("[\"10.0.0.1\"]", 0));
        (await Add(reactivated, "10.0.0.4", "fail")).Status.ShouldBe(422);
        (await Seen(reactivated)).ShouldBe(("[\"10.0.0.1\"]", 0), "after the reactivation too");
    }

    [Fact]
    public async Task An_actor_that_was_never_deployed_or_was_removed_answers_404()
    {
        var state = new TestStateManager();
        var pool = NewPool();
        var never = await Actor(pool, new TestStateManager(), "nobody").CallAsync(new FunctionActorCall("{}"));
        never.Status.ShouldBe(404);
        never.Code.ShouldBe("not_found");

        var actor = Actor(pool, state);
        await actor.DeployAsync(Deployment());
        await Call(actor);
        await actor.RemoveAsync();

        (await actor.CallAsync(new FunctionActorCall("{}"))).Status.ShouldBe(404);
        state.Saved.ShouldBeEmpty();
        (await Actor(pool, new TestStateManager(state.Saved)).CallAsync(new FunctionActorCall("{}"))).Status.ShouldBe(404);
    }

    [Fact]
    public async Task Redeploying_starts_the_instance_afresh()
    {
        var actor = Actor(NewPool(), new TestStateManager());
        await actor.DeployAsync(Deployment());
        await Call(actor);
        await Call(actor);

        await actor.DeployAsync(Deployment(step: 5));

        (await Call(actor))["count"]!.GetValue<int>().ShouldBe(5);
    }

    [Fact]
    public async Task A_redeployment_that_cannot_load_answers_why_and_the_earlier_one_keeps_running_with_its_state()
    {
        var state = new TestStateManager();
        var actor = Actor(NewPool(), state);
        (await actor.DeployAsync(Deployment())).Ok.ShouldBeTrue();
        await Call(actor);
        await Call(actor);
        var saved = new Dictionary<string, string>(state.Saved);

        var reply = await actor.DeployAsync(new FunctionActorDeployment("counter", new JsonObject
        {
            ["policy_rule_uri"] = "broken:1.0-test",
            ["code"] = _bundles.Add("broken", CountingPolicy.FailsToLoad),
        }.ToJsonString()));

        (reply.Ok, reply.Status, reply.Code).ShouldBe((false, 422, "policy_error"));
        reply.Message.ShouldContain("no licence on this host");
        state.Saved.OrderBy(k => k.Key).ShouldBe(saved.OrderBy(k => k.Key));
        var next = await Call(actor);
        next["count"]!.GetValue<int>().ShouldBe(3);
        next["evals"]!.GetValue<int>().ShouldBe(3);
    }

    [Fact]
    public void Replica_actor_ids_are_the_name_or_name_tilde_index()
    {
        FunctionActors.Replica("f", 0, 1).GetId().ShouldBe("f");
        FunctionActors.Replica("f", 2, 3).GetId().ShouldBe("f~2");
        FunctionActors.FunctionName(new ActorId("f~2")).ShouldBe("f");
    }
}
