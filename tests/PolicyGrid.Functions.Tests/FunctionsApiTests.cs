using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Functions;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

public sealed class FunctionsApiTests : IAsyncLifetime
{
    private GridServer _server = null!;

    // Tests hold a call until a release file exists (HoldFirstReplica), made under /tmp: a worker's own /tmp would never
    // show it, and the held call would wait out its 20 s bound.
    private const string NoPrivateTemp = "PolicyGrid:Runtime:Pool:PrivateTemp";
    private HttpClient _client = null!;
    private string _policy = "";

    private readonly LogCapture _log = new();

    public async ValueTask InitializeAsync()
    {
        _server = new GridServer { TestServices = services => services.AddSingleton<ILoggerProvider>(_log), Settings = { [NoPrivateTemp] = "false" } };
        _client = _server.CreateClient();
        _policy = await _server.RegisterPolicyAsync("counting", CountingPolicy.Source,
            new JsonObject { ["step"] = new JsonObject { ["type"] = "integer", ["min"] = 1 } }, new JsonObject { ["step"] = 1 });
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    private Task<Answer> Deploy(JsonObject body, string executor = "local") =>
        _client.Send(HttpMethod.Post, $"/function/deployments/create/{executor}", body);

    private JsonObject Body(string name, int replicas = 1) => new()
    {
        ["name"] = name,
        ["policy_rule_uri"] = _policy,
        ["policy_rule_parameters"] = new JsonObject(),
        ["replicas"] = replicas,
        ["function_metadata"] = new JsonObject { ["team"] = "billing" },
        ["function_tags"] = new JsonArray("counter"),
    };

    private async Task<int> Count(string name, JsonObject? input = null)
    {
        var answer = await _client.Send(HttpMethod.Post, $"/function/call_function/{name}", input ?? new JsonObject());
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return answer.Data!["count"]!.GetValue<int>();
    }

    [Fact]
    public async Task A_deployment_naming_fields_it_lacks_is_made_and_the_answer_warns_of_each_with_the_field_meant()
    {
        var body = Body("warned");
        body["replica"] = 2;
        body["autoscaling"] = new JsonObject { ["enabled"] = false, ["max_replica"] = 4 };

        var deployed = await Deploy(body);

        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        deployed.Body!["warnings"]!.AsArray().Select(w => w!.GetValue<string>()).ShouldBe([
            "'replica' is not a field of a function deployment and was not stored; did you mean 'replicas'?",
            "'autoscaling.max_replica' is not a field of autoscaling and was not stored; did you mean 'autoscaling.max_replicas'?",
        ]);
        deployed.Data!["replicas"]!.GetValue<int>().ShouldBe(1);
        (await Deploy(Body("unwarned"))).Body!.AsObject().ContainsKey("warnings").ShouldBeFalse();
    }

    [Fact]
    public async Task A_deployed_function_answers_one_two_three_and_its_document_records_the_deployment()
    {
        var deployed = await Deploy(Body("counter"));

        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        var doc = deployed.Data!.AsObject();
        doc["function_id"]!.GetValue<string>().ShouldBe("counter");
        doc["function_executor_id"]!.GetValue<string>().ShouldBe("local");
        doc["function_policy_rule_uri"]!.GetValue<string>().ShouldBe(_policy);
        doc["function_policy_data"]!["policy_parameters"]!["step"]!.GetValue<int>().ShouldBe(1);
        doc["status"]!.GetValue<string>().ShouldBe("running");
        doc["autoscaling"]!["enabled"]!.GetValue<bool>().ShouldBeFalse();
        doc["created_at"]!.GetValue<string>().ShouldNotBeEmpty();

        (await Count("counter")).ShouldBe(1);
        (await Count("counter")).ShouldBe(2);
        (await Count("counter")).ShouldBe(3);
        (await _client.Send(HttpMethod.Get, "/function/counter")).Data!["function_tags"]!.AsArray().Single()!.GetValue<string>().ShouldBe("counter");
    }

    [Fact]
    public async Task A_query_cannot_read_back_a_secret_parameter_of_the_policy_snapshot()
    {
        var secretive = await _server.RegisterPolicyAsync("secretive-counting", CountingPolicy.Source,
            new JsonObject { ["step"] = new JsonObject { ["type"] = "integer", ["min"] = 1 }, ["token"] = new JsonObject { ["type"] = "string", ["secret"] = true } },
            new JsonObject { ["step"] = 1, ["token"] = "hunter2" });
        var body = Body("keeper");
        body["policy_rule_uri"] = secretive;
        (await Deploy(body)).Status.ShouldBe(200);
        async Task<int> Found(string filter) =>
            (await _client.Send(HttpMethod.Post, "/function/query", JsonNode.Parse(filter)!.AsObject())).Data!.AsArray().Count;

        (await Found("""{"function_id": "keeper"}""")).ShouldBe(1);
        (await Found("""{"function_id": "keeper", "function_policy_data.policy_parameters.token": {"$regex": "^hun"}}""")).ShouldBe(0);
        (await Found("""{"function_id": "keeper", "function_policy_data.policy_parameters.token": "hunter2"}""")).ShouldBe(0);
        (await Found("""{"function_id": "keeper", "function_policy_data.policy_parameters.token": "***"}""")).ShouldBe(1);
        (await Found("""{"function_id": "keeper", "function_policy_data.policy_parameters.step": 1}""")).ShouldBe(1);
    }

    [Fact]
    public async Task Deploys_and_removes_of_one_name_racing_leave_the_registry_and_the_host_agreeing()
    {
        for (var round = 0; round < 4; round++)
        {
            var name = $"racer{round}";
            var answers = await Task.WhenAll(Enumerable.Range(0, 24).Select(async i =>
            {
                var answer = i % 2 == 0
                    ? await Deploy(Body(name))
                    : await _client.Send(HttpMethod.Delete, $"/function/deployments/remove/{name}");
                return (Deploy: i % 2 == 0, answer.Status);
            }));
            answers.Where(a => a.Deploy).Select(a => a.Status).ShouldAllBe(s => s == 200 || s == 409);
            answers.Where(a => !a.Deploy).Select(a => a.Status).ShouldAllBe(s => s == 200 || s == 404);
            // Every deployment that answered 200 was removed at most once: removes that answered 200 never outnumber them.
            answers.Count(a => !a.Deploy && a.Status == 200).ShouldBeLessThanOrEqualTo(answers.Count(a => a.Deploy && a.Status == 200));

            var listed = (await _client.Send(HttpMethod.Get, $"/function/{name}")).Status;
            var called = (await _client.Send(HttpMethod.Post, $"/function/call_function/{name}", new JsonObject())).Status;
            if (listed == 200) called.ShouldBe(200, $"round {round}: listed but not callable");
            else called.ShouldBe(404, $"round {round}: not listed, yet callable");
        }
    }

    [Fact]
    public async Task One_hundred_concurrent_calls_add_exactly_one_hundred()
    {
        (await Deploy(Body("busy"))).Status.ShouldBe(200);
        var before = await Count("busy");

        var answers = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => Count("busy")));

        answers.Order().ShouldBe(Enumerable.Range(before + 1, 100));
        (await Count("busy")).ShouldBe(before + 101);
    }

    [Fact]
    public async Task A_deploy_or_remove_cut_short_by_a_crash_is_completed_at_restart_and_the_name_can_be_deployed_again()
    {
        // A server killed mid-remove left a function that GET answered as running while every call was a 404 "not
        // deployed"; killed mid-deploy, one pending for good. Either way a deploy of the name sent again was a 409.
        var ct = TestContext.Current.CancellationToken;
        (await Deploy(Body("half-removed"))).Status.ShouldBe(200);
        (await Deploy(Body("half-deployed"))).Status.ShouldBe(200);
        // What the crash leaves: a remove that had stopped the function on its host but not yet deleted its document,
        // and a deploy that had started it on its host but not yet marked its document running.
        await _server.Store.DeleteAsync(LocalFunctionHost.Collection, "half-removed", null, ct);
        var deploying = (await _server.Store.GetAsync(Collections.Functions, "half-deployed", ct))!.Body;
        deploying["status"] = "pending";
        await _server.Store.ReplaceAsync(Collections.Functions, "half-deployed", deploying, null, ct);

        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();

        foreach (var name in new[] { "half-removed", "half-deployed" })
        {
            (await _client.Send(HttpMethod.Get, $"/function/{name}")).Status.ShouldBe(404, name);
            (await _server.Service<LocalFunctionHost>().StatusAsync(name, ct)).ShouldBeNull(name);
            (await Deploy(Body(name))).Status.ShouldBe(200, name);
            (await Count(name)).ShouldBe(1, name);
        }
        _log.ToString().ShouldContain("function half-removed: its removal was cut short when the server stopped; finished");
        _log.ToString().ShouldContain("function half-deployed: its deployment was cut short when the server stopped; undone, deploy it again");
    }

    [Fact]
    public async Task The_count_continues_after_the_server_restarts_on_the_same_data()
    {
        (await Deploy(Body("durable"))).Status.ShouldBe(200);
        await Count("durable");
        await Count("durable");
        (await _client.Send(HttpMethod.Post, "/function/durable/management", new JsonObject { ["action"] = "set", ["data"] = new JsonObject { ["count"] = 40 } })).Status.ShouldBe(200);

        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();

        (await Count("durable")).ShouldBe(41);
        var answer = await _client.Send(HttpMethod.Post, "/function/call_function/durable", new JsonObject());
        answer.Data!["evals"]!.GetValue<int>().ShouldBe(4, "context is persisted too");
    }

    [Fact]
    public async Task A_stateful_call_costs_one_worker_round_trip()
    {
        (await Deploy(Body("cheap"))).Status.ShouldBe(200);
        await Count("cheap");
        var pool = _server.Service<PythonWorkerPool>();

        var before = pool.RoundTrips;
        for (var i = 0; i < 10; i++) await Count("cheap");

        (pool.RoundTrips - before).ShouldBe(10, "get_state() rides on the eval round trip");
        (await _server.Service<IContextStore>().GetAsync("function:cheap#0", TestContext.Current.CancellationToken))!["state"]!["count"]!
            .GetValue<int>().ShouldBe(11);
    }

    [Fact]
    public async Task A_call_that_changes_nothing_does_not_rewrite_the_saved_state()
    {
        // peek is declared read_only: a journalled action that changes nothing is written once, for its journal_seq.
        var body = Body("quiet");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("quiet", CountingPolicy.Source);
        var commands = new JsonArray(new JsonObject { ["name"] = "set" }, new JsonObject { ["name"] = "peek", ["read_only"] = true });
        (await _client.Send(HttpMethod.Put, $"/policy/{body["policy_rule_uri"]}", new JsonObject { ["$set"] = new JsonObject { ["management_commands_schema"] = commands } }))
            .Status.ShouldBe(200);
        (await Deploy(body)).Status.ShouldBe(200);
        await Count("quiet");
        var store = _server.Service<IContextStore>();
        var ct = TestContext.Current.CancellationToken;
        // Mark the saved entry: only a write by the host can replace the mark.
        var marked = (await store.GetAsync("function:quiet#0", ct))!;
        marked["mark"] = true;
        await store.SetAsync("function:quiet#0", marked, null, ct);

        (await _client.Send(HttpMethod.Post, "/function/quiet/management", new JsonObject { ["action"] = "peek", ["data"] = new JsonObject() })).Status.ShouldBe(200);
        (await store.GetAsync("function:quiet#0", ct))!["mark"].ShouldNotBeNull("peek changed neither context nor state");

        (await Count("quiet")).ShouldBe(2);
        var saved = (await store.GetAsync("function:quiet#0", ct))!;
        saved["mark"].ShouldBeNull();
        saved["state"]!["count"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task A_get_state_that_raises_is_a_422_naming_get_state_and_saves_nothing()
    {
        var policy = await _server.RegisterPolicyAsync("brittle", """
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    self.count = 0
                def eval(self, parameters, input_data, context):
                    self.count += 1
                    return {"count": self.count}
                def get_state(self):
                    if self.count >= 2:
                        raise RuntimeError("state is on fire")
                    return {"count": self.count}
                def set_state(self, state):
                    self.count = state["count"]
            """);
        var body = Body("brittle");
        body["policy_rule_uri"] = policy;
        (await Deploy(body)).Status.ShouldBe(200);
        (await Count("brittle")).ShouldBe(1);

        var failed = await _client.Send(HttpMethod.Post, "/function/call_function/brittle", new JsonObject());

        failed.Status.ShouldBe(422);
        failed.Code.ShouldBe("policy_error");
        failed.Message.ShouldContain("get_state() after eval raised RuntimeError: state is on fire");
        (await _server.Service<IContextStore>().GetAsync("function:brittle#0", TestContext.Current.CancellationToken))!["state"]!["count"]!
            .GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task A_set_state_that_raises_after_a_restart_is_a_422_naming_set_state_and_the_saved_state_stays()
    {
        var policy = await _server.RegisterPolicyAsync("touchy", CountingPolicy.CannotRestore);
        var body = Body("touchy");
        body["policy_rule_uri"] = policy;
        (await Deploy(body)).Status.ShouldBe(200);
        (await Count("touchy")).ShouldBe(1);
        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();

        // It used to answer the bare "RuntimeError: cannot restore", as if eval had raised it.
        for (var i = 0; i < 2; i++)
        {
            var failed = await _client.Send(HttpMethod.Post, "/function/call_function/touchy", new JsonObject());
            (failed.Status, failed.Code, failed.Message).ShouldBe((422, "policy_error",
                "function touchy (instance #0) could not restore its state with set_state() after its instance was recreated: " +
                "RuntimeError: cannot restore; it tries again before its next call"));
        }
        (await _server.Service<IContextStore>().GetAsync("function:touchy#0", TestContext.Current.CancellationToken))!["state"]!["count"]!
            .GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task A_get_state_answering_no_dict_is_a_422_naming_it_and_leaves_no_trace()
    {
        var body = Body("list-state");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("list-state", CountingPolicy.ListState);
        (await Deploy(body)).Status.ShouldBe(200);
        (await Count("list-state")).ShouldBe(1);

        var failed = await _client.Send(HttpMethod.Post, "/function/call_function/list-state", new JsonObject { ["shape"] = "list" });

        (failed.Status, failed.Code, failed.Message).ShouldBe((422, "policy_error", "get_state() after eval answered a list, not a dict"));
        var saved = (await _server.Service<IContextStore>().GetAsync("function:list-state#0", TestContext.Current.CancellationToken))!;
        saved["state"]!.ToJsonString().ShouldBe("""{"count":1}""");
        // The instance that counted the failed call is gone: its successor starts from the saved state and context.
        var next = await _client.Send(HttpMethod.Post, "/function/call_function/list-state", new JsonObject());
        (next.Data!["count"]!.GetValue<int>(), next.Data!["evals"]!.GetValue<int>()).ShouldBe((2, 2));
    }

    [Fact]
    public async Task Answers_that_are_no_dict_are_answered_as_type_2_answers_them_and_a_failed_one_leaves_no_trace()
    {
        var body = Body("loose");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("loose", """
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    self.total = 0
                def eval(self, parameters, input_data, context):
                    context["evals"] = context.get("evals", 0) + 1
                    return None if input_data.get("none") else {"total": self.total, "evals": context["evals"]}
                def management(self, action, data):
                    self.total += 1
                    return None if action == "none" else [self.total]
                def get_state(self):
                    return {"total": self.total}
                def set_state(self, state):
                    self.total = state["total"]
            """);
        (await Deploy(body)).Status.ShouldBe(200);

        var none = await _client.Send(HttpMethod.Post, "/function/loose/management", new JsonObject { ["action"] = "none", ["data"] = new JsonObject() });
        (none.Status, none.Data!.ToJsonString()).ShouldBe((200, "{}")); // was {"result":null}
        var list = await _client.Send(HttpMethod.Post, "/function/loose/management", new JsonObject { ["action"] = "list", ["data"] = new JsonObject() });
        (list.Status, list.Code, list.Message).ShouldBe((422, "policy_error", "function loose: management 'list' returned a list, not a dict")); // was 200 {"result":[2]}
        var eval = await _client.Send(HttpMethod.Post, "/function/call_function/loose", new JsonObject { ["none"] = true });
        (eval.Status, eval.Message).ShouldBe((422, "function loose: eval returned None, not a dict")); // said "not Null"

        // As when they raise: the failed action and call left nothing, neither in the instance nor in the context.
        var next = await _client.Send(HttpMethod.Post, "/function/call_function/loose", new JsonObject());
        (next.Data!["total"]!.GetValue<int>(), next.Data!["evals"]!.GetValue<int>()).ShouldBe((1, 1));
    }

    [Fact]
    public async Task A_call_or_management_that_raises_after_changing_the_instance_leaves_no_trace_in_its_state()
    {
        var body = Body("halfway");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("halfway", CountingPolicy.Halfway);
        (await Deploy(body)).Status.ShouldBe(200);
        (await Count("halfway")).ShouldBe(1);

        var failed = await _client.Send(HttpMethod.Post, "/function/call_function/halfway", new JsonObject { ["fail"] = true });
        var managed = await _client.Send(HttpMethod.Post, "/function/halfway/management", new JsonObject { ["action"] = "bump" });

        failed.Status.ShouldBe(422);
        managed.Status.ShouldBe(422);
        var next = await _client.Send(HttpMethod.Post, "/function/call_function/halfway", new JsonObject());
        next.Data!["count"]!.GetValue<int>().ShouldBe(2, "the failed call and management changed the live instance");
        next.Data!["evals"]!.GetValue<int>().ShouldBe(2);
        (await _server.Service<IContextStore>().GetAsync("function:halfway#0", TestContext.Current.CancellationToken))!["state"]!["count"]!
            .GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task A_failed_call_or_management_of_a_class_without_get_state_leaves_the_instance_as_a_restart_rebuilds_it()
    {
        // The instance of a class without get_state was kept after a failure: what add_ip appended before it raised (or
        // answered a list) stayed in the live instance, though the journal never had it, so later calls allowed an IP the
        // caller was told was not added, until a restart rebuilt the instance from the journal and denied it again.
        var body = Body("halfway-allow");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("halfway-allow", CountingPolicy.HalfwayAllowList);
        (await Deploy(body)).Status.ShouldBe(200);
        Task<Answer> Add(string ip, string? how = null)
        {
            var data = new JsonObject { ["ip"] = ip };
            if (how is not null) data[how] = true;
            return _client.Send(HttpMethod.Post, "/function/halfway-allow/management", new JsonObject { ["action"] = "add_ip", ["data"] = data });
        }
        async Task<(string Ips, int Marks)> Seen()
        {
            var answer = await _client.Send(HttpMethod.Post, "/function/call_function/halfway-allow", new JsonObject());
            answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
            return (answer.Data!["ips"]!.ToJsonString(), answer.Data!["marks"]!.GetValue<int>());
        }
        (await Add("10.0.0.1")).Status.ShouldBe(200);

        var raised = await Add("10.0.0.2", "fail");
        (raised.Status, raised.Code).ShouldBe((422, "policy_error"));
        raised.Message.ShouldContain("added 10.0.0.2, then failed");
        (await Seen()).ShouldBe(("[\"10.0.0.1\"]", 0), "a management action that raised after it changed the instance left its change");

        var refused = await Add("10.0.0.3", "refuse");
        (refused.Status, refused.Message).ShouldBe((422, "function halfway-allow: management 'add_ip' returned a list, not a dict"));
        (await Seen()).ShouldBe(("[\"10.0.0.1\"]", 0), "a management action whose answer was refused left its change");

        var failedCall = await _client.Send(HttpMethod.Post, "/function/call_function/halfway-allow", new JsonObject { ["mark"] = true, ["fail"] = true });
        (failedCall.Status, failedCall.Code).ShouldBe((422, "policy_error"));
        var refusedCall = await _client.Send(HttpMethod.Post, "/function/call_function/halfway-allow", new JsonObject { ["mark"] = true, ["refuse"] = true });
        (refusedCall.Status, refusedCall.Message).ShouldBe((422, "function halfway-allow: eval returned None, not a dict"));
        (await Seen()).ShouldBe(("[\"10.0.0.1\"]", 0), "an eval that raised (or answered None) after it changed self left its change");
        (await JournalEntries("halfway-allow")).ShouldBe(1);

        // A restart rebuilds from the journal exactly what the live instance held.
        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();
        (await Seen()).ShouldBe(("[\"10.0.0.1\"]", 0));
        (await Add("10.0.0.4", "fail")).Status.ShouldBe(422);
        (await Seen()).ShouldBe(("[\"10.0.0.1\"]", 0), "after the restart too");
    }

    [Fact]
    public async Task Retiring_the_policy_stops_its_deployed_function_with_410_and_reactivating_it_resumes_the_count()
    {
        var body = Body("retiring");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("retiring", CountingPolicy.Source);
        var policy = body["policy_rule_uri"]!.GetValue<string>();
        (await Deploy(body)).Status.ShouldBe(200);
        (await Count("retiring")).ShouldBe(1);

        (await _client.Send(HttpMethod.Put, $"/policy/{policy}", new JsonObject { ["$set"] = new JsonObject { ["status"] = "retired" } })).Status.ShouldBe(200);
        var call = await _client.Send(HttpMethod.Post, "/function/call_function/retiring", new JsonObject());
        var managed = await _client.Send(HttpMethod.Post, "/function/retiring/management", new JsonObject { ["action"] = "peek" });

        call.Status.ShouldBe(410, "a retired policy answered through its function");
        call.Code.ShouldBe("retired");
        call.Message.ShouldContain("'retiring'");
        call.Message.ShouldContain(policy);
        managed.Status.ShouldBe(410);
        (await _client.Send(HttpMethod.Put, $"/policy/{policy}", new JsonObject { ["$set"] = new JsonObject { ["status"] = "active" } })).Status.ShouldBe(200);
        (await Count("retiring")).ShouldBe(2);
    }

    [Fact]
    public async Task Calls_and_management_of_a_function_whose_policy_is_deprecated_run_and_answer_a_Deprecation_header()
    {
        var body = Body("deprecating");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("deprecating", CountingPolicy.Source);
        var policy = body["policy_rule_uri"]!.GetValue<string>();
        (await Deploy(body)).Status.ShouldBe(200);
        var active = await _client.Send(HttpMethod.Post, "/function/call_function/deprecating", new JsonObject());
        active.Header("Deprecation").ShouldBeNull();

        (await _client.Send(HttpMethod.Put, $"/policy/{policy}", new JsonObject { ["$set"] = new JsonObject { ["status"] = "deprecated" } })).Status.ShouldBe(200);
        var call = await _client.Send(HttpMethod.Post, "/function/call_function/deprecating", new JsonObject());
        var managed = await _client.Send(HttpMethod.Post, "/function/deprecating/management", new JsonObject { ["action"] = "peek" });

        call.Status.ShouldBe(200);
        call.Data!["count"]!.GetValue<int>().ShouldBe(2);
        call.Header("Deprecation").ShouldBe("true", "a deprecated policy's function answered as if it were active");
        managed.Status.ShouldBe(200);
        managed.Header("Deprecation").ShouldBe("true");
    }

    [Fact]
    public async Task A_call_and_a_management_action_queued_for_their_turn_when_the_policy_is_retired_do_not_run()
    {
        var body = Body("retired-queue");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("retired-queue", CountingPolicy.Source);
        var policy = body["policy_rule_uri"]!.GetValue<string>();
        (await Deploy(body)).Status.ShouldBe(200);
        var host = _server.Service<LocalFunctionHost>();
        var shared = Directory.CreateTempSubdirectory("pg-release-").FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(shared, (UnixFileMode)0b111_101_101);
        var release = Path.Combine(shared, "release");

        // One call holds the instance's turn; a call and a management action wait behind it, both checked and accepted.
        var held = Count("retired-queue", new JsonObject { ["hold"] = release });
        await Until(async () => (await host.StatusAsync("retired-queue", TestContext.Current.CancellationToken))!.Busy == 1);
        var queued = _client.Send(HttpMethod.Post, "/function/call_function/retired-queue", new JsonObject());
        var managed = _client.Send(HttpMethod.Post, "/function/retired-queue/management", new JsonObject { ["action"] = "set", ["data"] = new JsonObject { ["count"] = 100 } });
        await Until(async () => (await host.StatusAsync("retired-queue", TestContext.Current.CancellationToken))!.Queued == 2);
        (await _client.Send(HttpMethod.Put, $"/policy/{policy}", new JsonObject { ["$set"] = new JsonObject { ["status"] = "retired" } })).Status.ShouldBe(200);
        await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);

        (await held).ShouldBe(1, "the call already running ends as it began");
        var call = await queued;
        call.Status.ShouldBe(410, "a call queued when its policy was retired ran: " + call.Body?.ToJsonString());
        call.Code.ShouldBe("retired");
        call.Message.ShouldContain("call of function retired-queue not run");
        (await managed).Status.ShouldBe(410);
        (await _client.Send(HttpMethod.Put, $"/policy/{policy}", new JsonObject { ["$set"] = new JsonObject { ["status"] = "active" } })).Status.ShouldBe(200);
        (await Count("retired-queue")).ShouldBe(2, "neither the refused call nor the refused management changed the count");
    }

    [Fact]
    public async Task Management_reaches_the_live_instance()
    {
        (await Deploy(Body("managed"))).Status.ShouldBe(200);
        await Count("managed");

        var peek = await _client.Send(HttpMethod.Post, "/function/managed/management", new JsonObject { ["action"] = "peek", ["data"] = new JsonObject() });
        peek.Data!["count"]!.GetValue<int>().ShouldBe(1);
        await _client.Send(HttpMethod.Post, "/function/managed/management", new JsonObject { ["action"] = "set", ["data"] = new JsonObject { ["count"] = 10 } });

        (await Count("managed")).ShouldBe(11);
    }

    [Fact]
    public async Task Management_is_checked_against_the_policys_management_commands_schema_as_type_2_is()
    {
        var policy = new JsonObject
        {
            ["name"] = "commanded", ["version"] = "1.0", ["release_tag"] = "test", ["type"] = "python_class_v1",
            ["code"] = await _server.StoreBundleAsync(CountingPolicy.Source),
            ["policy_parameters_schema"] = new JsonObject { ["step"] = new JsonObject { ["type"] = "integer" } },
            ["policy_parameters"] = new JsonObject { ["step"] = 1 },
            ["management_commands_schema"] = JsonNode.Parse("""
                [{"name": "set", "schema": {"count": {"type": "integer", "required": true}}}, {"name": "peek", "schema": {}}]
                """),
        };
        (await _client.Send(HttpMethod.Post, "/policy", policy)).Status.ShouldBe(200);
        var body = Body("commanded-fn");
        body["policy_rule_uri"] = "commanded:1.0-test";
        (await Deploy(body)).Status.ShouldBe(200);
        await Count("commanded-fn");

        var unknown = await _client.Send(HttpMethod.Post, "/function/commanded-fn/management", new JsonObject { ["action"] = "reset", ["data"] = new JsonObject() });
        unknown.Status.ShouldBe(400, unknown.Body?.ToJsonString());
        unknown.Message!.ShouldContain("'reset' is not a management command of commanded:1.0-test (known: set, peek)");
        var bad = await _client.Send(HttpMethod.Post, "/function/commanded-fn/management", new JsonObject { ["action"] = "set", ["data"] = new JsonObject { ["count"] = "ten" } });
        bad.Status.ShouldBe(400, bad.Body?.ToJsonString());
        bad.Message!.ShouldContain("data.count");
        (await Count("commanded-fn")).ShouldBe(2); // neither reached the instance
        (await _client.Send(HttpMethod.Post, "/function/commanded-fn/management", new JsonObject { ["action"] = "set", ["data"] = new JsonObject { ["count"] = 10 } })).Status.ShouldBe(200);
        (await Count("commanded-fn")).ShouldBe(11);
    }

    [Fact]
    public async Task Management_without_an_action_is_a_400_and_an_unknown_action_is_the_policys_422()
    {
        (await Deploy(Body("strict"))).Status.ShouldBe(200);

        var missing = await _client.Send(HttpMethod.Post, "/function/strict/management", new JsonObject { ["data"] = new JsonObject() });
        missing.Status.ShouldBe(400);
        missing.Message.ShouldContain("action");
        var unknown = await _client.Send(HttpMethod.Post, "/function/strict/management", new JsonObject { ["action"] = "explode" });
        unknown.Status.ShouldBe(422);
        unknown.Code.ShouldBe("policy_error");
        unknown.Message.ShouldContain("unknown action explode");
    }

    [Fact]
    public async Task Removing_a_function_makes_calls_404_frees_its_instances_and_forgets_its_state()
    {
        (await Deploy(Body("temporary"))).Status.ShouldBe(200);
        await Count("temporary");
        var host = _server.Service<LocalFunctionHost>();
        (await host.StatusAsync("temporary", TestContext.Current.CancellationToken))!.Instances.ShouldBe(1);

        var removed = await _client.Send(HttpMethod.Delete, "/function/deployments/remove/temporary");

        removed.Status.ShouldBe(200);
        removed.Data!["function_id"]!.GetValue<string>().ShouldBe("temporary");
        (await _client.Send(HttpMethod.Post, "/function/call_function/temporary", new JsonObject())).Status.ShouldBe(404);
        (await _client.Send(HttpMethod.Get, "/function/temporary")).Status.ShouldBe(404);
        (await host.StatusAsync("temporary", TestContext.Current.CancellationToken)).ShouldBeNull();
        (await _server.Service<IContextStore>().GetAsync("function:temporary#0", TestContext.Current.CancellationToken)).ShouldBeNull();

        // Deploying the name again starts from nothing.
        (await Deploy(Body("temporary"))).Status.ShouldBe(200);
        (await Count("temporary")).ShouldBe(1);
    }

    [Fact]
    public async Task Unknown_functions_are_404_everywhere()
    {
        foreach (var (method, path) in new[]
        {
            (HttpMethod.Post, "/function/call_function/ghost"),
            (HttpMethod.Post, "/function/ghost/management"),
            (HttpMethod.Get, "/function/ghost"),
            (HttpMethod.Delete, "/function/deployments/remove/ghost"),
        })
        {
            var answer = await _client.Send(method, path, new JsonObject { ["action"] = "peek" });
            answer.Status.ShouldBe(404, $"{method} {path}");
            answer.Code.ShouldBe("not_found");
            answer.Message.ShouldContain("ghost");
        }
    }

    [Fact]
    public async Task Deploying_on_an_unknown_executor_or_an_unknown_policy_is_404_naming_it()
    {
        var executor = await Deploy(Body("nowhere"), executor: "mars");
        executor.Status.ShouldBe(404);
        executor.Message.ShouldContain("mars");

        var body = Body("nothing");
        body["policy_rule_uri"] = "missing:9.9-none";
        var policy = await Deploy(body);
        policy.Status.ShouldBe(404);
        policy.Message.ShouldContain("missing:9.9-none");
        policy.Message.ShouldContain("policygrid policy push"); // the CLI's way to create it, not only the HTTP one

        (await _client.Send(HttpMethod.Post, "/function/query", new JsonObject())).Data!.AsArray().ShouldBeEmpty();
    }

    public static TheoryData<string, string, string> BadBodies => new()
    {
        { "replicas", "0", "replicas" },
        { "replicas", "\"two\"", "replicas" },
        { "replicas", "1.5", "replicas" },
        { "autoscaling", """{"enabled": true, "min_replicas": 3, "max_replicas": 2}""", "autoscaling.min_replicas" },
        { "autoscaling", """{"enabled": "yes"}""", "autoscaling.enabled" },
        { "autoscaling", "[]", "autoscaling" },
        { "function_tags", "\"a,b\"", "function_tags" },
        { "function_metadata", "[1]", "function_metadata" },
        { "policy_rule_parameters", "{\"step\": 0}", "policy_rule_parameters.step" },
        { "name", "\"has space\"", "name" },
        { "name", "null", "name" },
        { "policy_rule_uri", "\"no-colon\"", "policy_rule_uri" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task Bad_deployment_bodies_are_400_naming_the_field_and_deploy_nothing(string field, string value, string named)
    {
        var body = Body("bad");
        body[field] = JsonNode.Parse(value);

        var answer = await Deploy(body);

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("validation_failed");
        answer.Message.ShouldContain(named);
        (await _client.Send(HttpMethod.Get, "/function/bad")).Status.ShouldBe(404);
        (await _server.Service<LocalFunctionHost>().StatusAsync("bad", TestContext.Current.CancellationToken)).ShouldBeNull();
    }

    [Theory]
    [InlineData("replicas", "1e30")]
    [InlineData("autoscaling", """{"enabled": true, "max_replicas": 1e30}""")]
    public async Task A_replica_count_too_large_for_a_number_we_hold_is_out_of_range_not_no_integer(string field, string value)
    {
        var body = Body("huge");
        body[field] = JsonNode.Parse(value);

        var answer = await Deploy(body);

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message.ShouldContain("is out of range: must be an integer from 1 to 1000");
        answer.Message.ShouldNotContain("must be an integer, not");
    }

    [Fact]
    public async Task A_body_that_is_not_an_object_is_400()
    {
        (await _client.Send(HttpMethod.Post, "/function/deployments/create/local", raw: "[1,2]")).Status.ShouldBe(400);
        (await _client.Send(HttpMethod.Post, "/function/deployments/create/local", raw: "{not json")).Status.ShouldBe(400);
    }

    [Fact]
    public async Task Deploying_a_name_twice_is_409_and_keeps_the_first()
    {
        (await Deploy(Body("twice"))).Status.ShouldBe(200);
        await Count("twice");

        var again = await Deploy(Body("twice"));

        again.Status.ShouldBe(409);
        (await Count("twice")).ShouldBe(2);
    }

    [Fact]
    public async Task An_empty_executor_id_lets_the_allocation_rule_pick_a_healthy_executor()
    {
        var answer = await _client.Send(HttpMethod.Post, "/function/deployments/create/", Body("placed"));

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["function_executor_id"]!.GetValue<string>().ShouldBe("local");
        (await Count("placed")).ShouldBe(1);
    }

    [Fact]
    public async Task Allocation_counts_an_older_deployment_s_replicas_within_its_autoscaling_bounds()
    {
        var ct = TestContext.Current.CancellationToken;
        var local = (await _server.Store.GetAsync(Collections.Executors, "local", ct))!.Body;
        var vcpus = local["executor_hardware_info"]!["vcpus"]!["count"]!.GetValue<double>();
        // "spare" has one vCPU less than "local": local wins (on its id) only while the deployment below counts as 1 replica.
        await _server.Store.UpsertAsync(Collections.Executors, "spare", new JsonObject
        {
            ["executor_id"] = "spare", ["executor_host_uri"] = "http://127.0.0.1:9", ["executor_metadata"] = new JsonObject(),
            ["executor_hardware_info"] = new JsonObject { ["vcpus"] = new JsonObject { ["count"] = vcpus - 1 } }, ["executor_status"] = "healthy",
        }, ct);
        // As a server before the clamp stored it: replicas 10 with max_replicas 1, of which one instance runs.
        await _server.Store.UpsertAsync(Collections.Functions, "old-wide", new JsonObject
        {
            ["function_id"] = "old-wide", ["function_executor_id"] = "local", ["function_policy_rule_uri"] = "counter:1.0-beta",
            ["replicas"] = 10, ["autoscaling"] = new JsonObject { ["enabled"] = true, ["min_replicas"] = 1, ["max_replicas"] = 1 },
            ["status"] = "running",
        }, ct);

        var answer = await _client.Send(HttpMethod.Post, "/function/deployments/create/", Body("placed-after-old"));

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["function_executor_id"]!.GetValue<string>().ShouldBe("local");
    }

    // Many documents at once, straight into the store (one batch, not one request each).
    private Task StoreManyAsync(string collection, IEnumerable<(string Id, JsonObject Body)> documents) =>
        ((IDocumentBatchStore)_server.Store).CreateManyAsync(collection, documents.ToList(), d => d.Id, (w, d) => d.Body.WriteTo(w),
            TestContext.Current.CancellationToken);

    private async Task<double> LocalVcpusAsync() =>
        (await _server.Store.GetAsync(Collections.Executors, "local", TestContext.Current.CancellationToken))!
            .Body["executor_hardware_info"]!["vcpus"]!["count"]!.GetValue<double>();

    // An executor nothing listens on: a deployment placed there fails, one placed on "local" succeeds.
    private static JsonObject Unreachable(string id, double vcpus) => new()
    {
        ["executor_id"] = id, ["executor_host_uri"] = "http://127.0.0.1:9", ["executor_metadata"] = new JsonObject(),
        ["executor_hardware_info"] = new JsonObject { ["vcpus"] = new JsonObject { ["count"] = vcpus } }, ["executor_status"] = "healthy",
    };

    [Fact]
    public async Task Allocation_considers_executors_past_the_first_thousand()
    {
        // 1100 executors without vCPUs whose ids come before "local": read one page only, local is not among them.
        await StoreManyAsync(Collections.Executors, Enumerable.Range(0, 1100).Select(i => ($"aa-{i:D4}", Unreachable($"aa-{i:D4}", 0))));

        var answer = await _client.Send(HttpMethod.Post, "/function/deployments/create/", Body("placed-past-many"));

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["function_executor_id"]!.GetValue<string>().ShouldBe("local");
    }

    [Fact]
    public async Task Allocation_counts_every_deployment_on_an_executor_even_past_the_first_thousand()
    {
        // "spare" has 1050 vCPUs more than local but 1100 deployments: 50 fewer free (counting only 1000 of them, 50 more).
        await _server.Store.UpsertAsync(Collections.Executors, "spare", Unreachable("spare", await LocalVcpusAsync() + 1050), TestContext.Current.CancellationToken);
        await StoreManyAsync(Collections.Functions, Enumerable.Range(0, 1100).Select(i => ($"on-spare-{i:D4}", new JsonObject
        {
            ["function_id"] = $"on-spare-{i:D4}", ["function_executor_id"] = "spare", ["function_policy_rule_uri"] = "counter:1.0-beta",
            ["replicas"] = 1, ["status"] = "running",
        })));

        var answer = await _client.Send(HttpMethod.Post, "/function/deployments/create/", Body("placed-past-busy"));

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["function_executor_id"]!.GetValue<string>().ShouldBe("local");
    }

    [Fact]
    public async Task Every_hosted_function_is_restored_at_start_even_past_the_first_thousand()
    {
        var ct = TestContext.Current.CancellationToken;
        (await Deploy(Body("template", replicas: 2))).Status.ShouldBe(200);
        var hosted = (await _server.Store.GetAsync(LocalFunctionHost.Collection, "template", ct))!.Body;
        await StoreManyAsync(LocalFunctionHost.Collection, Enumerable.Range(0, 1100).Select(i =>
        {
            var copy = hosted.DeepClone().AsObject();
            copy["name"] = $"copy-{i:D4}";
            return ($"copy-{i:D4}", copy);
        }));

        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();

        // Restored at start: its instances are there before any call (not restored, it would show none until its first call).
        var host = _server.Service<LocalFunctionHost>();
        foreach (var name in new[] { "copy-0000", "copy-1099", "template" })
            (await host.StatusAsync(name, ct))!.Instances.ShouldBe(2, name);
    }

    [Fact]
    public async Task A_call_whose_input_breaks_the_policy_input_schema_is_a_400_as_in_type_2_and_runs_nothing()
    {
        var policy = await _server.StorePolicyAsync("guarded", CountingPolicy.Source, new JsonObject
        {
            ["policy_input_schema"] = new JsonObject { ["ip"] = new JsonObject { ["type"] = "string", ["required"] = true, ["pattern"] = @"^\d{1,3}(\.\d{1,3}){3}$" } },
        });
        var body = Body("guarded");
        body["policy_rule_uri"] = policy;
        (await Deploy(body)).Status.ShouldBe(200);

        foreach (var (input, expected) in new[]
        {
            ("""{"ip": "not-an-ip"}""", @"input_data.ip: does not match ^\d{1,3}(\.\d{1,3}){3}$"),
            ("{}", "input_data.ip: is required"),
            ("""{"ip": null}""", "input_data.ip: is required"),
            ("[1, 2]", "input_data: must be an object, not an array"),
        })
        {
            var answer = await _client.Send(HttpMethod.Post, "/function/call_function/guarded", raw: input);

            answer.Status.ShouldBe(400, input + " " + answer.Body?.ToJsonString());
            answer.Code.ShouldBe("validation_failed");
            answer.Message.ShouldBe(expected);
            if (input.StartsWith('{'))
            {
                // The same input through Type 2 is refused in the same words.
                var type2 = await _client.Post("/executor/local/execute_policy", $$$"""{"policy_rule_uri": "{{{policy}}}", "input_data": {{{input}}}}""");
                type2.Status.ShouldBe(400);
                type2.Message.ShouldBe(expected);
            }
        }

        // The policy never ran and nothing was saved: the first good call is its first eval.
        (await _server.Service<IContextStore>().GetAsync("function:guarded#0", TestContext.Current.CancellationToken)).ShouldBeNull();
        var good = await _client.Send(HttpMethod.Post, "/function/call_function/guarded", new JsonObject { ["ip"] = "10.0.0.1" });
        good.Status.ShouldBe(200, good.Body?.ToJsonString());
        good.Data!["count"]!.GetValue<int>().ShouldBe(1);
        good.Data!["evals"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task Hardware_info_allocation_cannot_read_is_refused_at_registration_and_allocated_deploys_keep_working()
    {
        var bad = await _client.Post("/executor", """{"executor_id":"e1","executor_host_uri":"http://127.0.0.1:9","executor_hardware_info":{"vcpus":4}}""");

        bad.Status.ShouldBe(400, bad.Body?.ToJsonString());
        bad.Message.ShouldContain("executor_hardware_info.vcpus");
        (await _server.Store.GetAsync(Collections.Executors, "e1", TestContext.Current.CancellationToken)).ShouldBeNull();
        var answer = await _client.Send(HttpMethod.Post, "/function/deployments/create", Body("after-bad"));
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        (await Count("after-bad")).ShouldBe(1);
    }

    [Fact]
    public async Task Allocation_passes_over_an_executor_stored_with_unreadable_hardware_info_and_logs_why()
    {
        // Documents an older server accepted, put straight into the store: "big" would win on vCPUs if its free count were read.
        var ct = TestContext.Current.CancellationToken;
        foreach (var (id, hardware) in new[] { ("bare", """{"vcpus": 4}"""), ("big", """{"vcpus": {"count": 64, "free": "lots"}}"""), ("bits", """{"vcpus": [8]}""") })
        {
            await _server.Store.UpsertAsync(Collections.Executors, id, new JsonObject
            {
                ["executor_id"] = id, ["executor_host_uri"] = "http://127.0.0.1:9", ["executor_metadata"] = new JsonObject(),
                ["executor_hardware_info"] = JsonNode.Parse(hardware), ["executor_status"] = "healthy",
            }, ct);
        }

        var answer = await _client.Send(HttpMethod.Post, "/function/deployments/create", Body("placed-past-bad"));

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["function_executor_id"]!.GetValue<string>().ShouldBe("local");
        (await Count("placed-past-bad")).ShouldBe(1);
        foreach (var (id, field) in new[] { ("bare", "executor_hardware_info.vcpus"), ("big", "executor_hardware_info.vcpus.free"), ("bits", "executor_hardware_info.vcpus") })
            _log.Entries.ShouldContain(e => e.Level == LogLevel.Warning && e.Message.Contains($"executor {id} is left out of function allocation") && e.Message.Contains(field),
                _log.ToString());
        // Type 2 on such an executor is unaffected by its hardware info: it is still reached (and here found down).
        var execute = await _client.Post("/executor/big/execute_policy", $$$"""{"policy_rule_uri": "{{{_policy}}}", "input_data": {}}""");
        execute.Status.ShouldBe(503, execute.Body?.ToJsonString());
    }

    [Fact]
    public async Task Replicas_are_independent_instances_and_a_call_goes_to_the_least_busy_one()
    {
        (await Deploy(Body("pair", replicas: 2))).Status.ShouldBe(200);
        var host = _server.Service<LocalFunctionHost>();
        (await host.StatusAsync("pair", TestContext.Current.CancellationToken))!.Instances.ShouldBe(2);
        // Where the worker (its own uid on a root server) can look: the data directory is the server's alone.
        var shared = Directory.CreateTempSubdirectory("pg-release-").FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(shared, (UnixFileMode)0b111_101_101);
        var release = Path.Combine(shared, "release");

        // The first call holds replica 0's turn; the second must go to the idle replica 1, which has its own count.
        var held = Count("pair", new JsonObject { ["hold"] = release });
        await Until(async () => (await host.StatusAsync("pair", TestContext.Current.CancellationToken))!.Busy == 1);
        (await Count("pair")).ShouldBe(1);
        await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
        (await held).ShouldBe(1);

        (await Count("pair")).ShouldBe(2);
    }

    [Fact]
    public async Task With_autoscaling_a_queue_starts_another_instance_up_to_max_replicas()
    {
        var body = Body("elastic");
        body["autoscaling"] = new JsonObject { ["enabled"] = true, ["min_replicas"] = 1, ["max_replicas"] = 2 };
        (await Deploy(body)).Status.ShouldBe(200);
        var host = _server.Service<LocalFunctionHost>();
        (await host.StatusAsync("elastic", TestContext.Current.CancellationToken))!.Instances.ShouldBe(1);
        // Where the worker (its own uid on a root server) can look: the data directory is the server's alone.
        var shared = Directory.CreateTempSubdirectory("pg-release-").FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(shared, (UnixFileMode)0b111_101_101);
        var release = Path.Combine(shared, "release");

        // One call running and one waiting on the only instance is a queue of 2: the next call starts instance 2.
        var held = Count("elastic", new JsonObject { ["hold"] = release });
        await Until(async () => (await host.StatusAsync("elastic", TestContext.Current.CancellationToken))!.Busy == 1);
        var queued = Count("elastic");
        await Until(async () => (await host.StatusAsync("elastic", TestContext.Current.CancellationToken))!.Queued == 1);
        (await Count("elastic")).ShouldBe(1);
        (await host.StatusAsync("elastic", TestContext.Current.CancellationToken))!.Instances.ShouldBe(2);
        await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
        (await held).ShouldBe(1);
        (await queued).ShouldBe(2);
    }

    [Fact]
    public async Task With_autoscaling_replicas_outside_min_to_max_are_stored_as_the_count_that_runs()
    {
        var body = Body("clamped", replicas: 10);
        body["autoscaling"] = new JsonObject { ["enabled"] = true, ["min_replicas"] = 1, ["max_replicas"] = 3 };
        var deployed = await Deploy(body);
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        deployed.Data!["replicas"]!.GetValue<int>().ShouldBe(3);
        (await _client.Send(HttpMethod.Get, "/function/clamped")).Data!["replicas"]!.GetValue<int>().ShouldBe(3);
        (await _server.Service<LocalFunctionHost>().StatusAsync("clamped", TestContext.Current.CancellationToken))!.Instances.ShouldBe(3);
    }

    [Fact]
    public async Task With_only_max_replicas_sent_below_replicas_min_replicas_follows_it_instead_of_being_blamed()
    {
        var body = Body("capped", replicas: 5);
        body["autoscaling"] = new JsonObject { ["enabled"] = true, ["max_replicas"] = 3 };
        var deployed = await Deploy(body);
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        deployed.Data!["replicas"]!.GetValue<int>().ShouldBe(3);
        deployed.Data!["autoscaling"]!["min_replicas"]!.GetValue<int>().ShouldBe(3);
        deployed.Data!["autoscaling"]!["max_replicas"]!.GetValue<int>().ShouldBe(3);
    }

    private Task<Answer> AddIp(string function, string ip, int? refuseAfterEvals = null)
    {
        var data = new JsonObject { ["ip"] = ip };
        if (refuseAfterEvals is { } n) data["refuse_after_evals"] = n;
        return _client.Send(HttpMethod.Post, $"/function/{function}/management", new JsonObject { ["action"] = "add_ip", ["data"] = data });
    }

    private async Task<JsonObject> Check(string function, string ip, string? hold = null)
    {
        var input = new JsonObject { ["ip"] = ip };
        if (hold is not null) input["hold"] = hold;
        var answer = await _client.Send(HttpMethod.Post, $"/function/call_function/{function}", input);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return (JsonObject)answer.Data!;
    }

    /// <summary>Holds replica 0's turn with a call until the returned release is created, so the next call goes to replica 1.</summary>
    private async Task<(Task<JsonObject> Held, string Release)> HoldFirstReplica(string function)
    {
        var host = _server.Service<LocalFunctionHost>();
        // Where the worker (its own uid on a root server) can look: the data directory is the server's alone.
        var shared = Directory.CreateTempSubdirectory("pg-release-").FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(shared, (UnixFileMode)0b111_101_101);
        var release = Path.Combine(shared, "release");
        var held = Check(function, "0.0.0.0", release);
        await Until(async () => (await host.StatusAsync(function, TestContext.Current.CancellationToken))!.Busy == 1);
        return (held, release);
    }

    [Fact]
    public async Task An_instance_autoscaling_starts_after_a_management_action_has_it_too()
    {
        var body = Body("allow");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("allow", CountingPolicy.AllowListKeepingState);
        body["autoscaling"] = new JsonObject { ["enabled"] = true, ["min_replicas"] = 1, ["max_replicas"] = 2 };
        (await Deploy(body)).Status.ShouldBe(200);
        (await AddIp("allow", "10.1.1.1")).Status.ShouldBe(200);
        var host = _server.Service<LocalFunctionHost>();

        // One call running and one waiting on the only instance: the next call starts instance 2.
        var (held, release) = await HoldFirstReplica("allow");
        var queued = Check("allow", "10.1.1.1");
        await Until(async () => (await host.StatusAsync("allow", TestContext.Current.CancellationToken))!.Queued == 1);
        var onNew = await Check("allow", "10.1.1.1");
        (await host.StatusAsync("allow", TestContext.Current.CancellationToken))!.Instances.ShouldBe(2);
        await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
        await held;

        onNew["evals"]!.GetValue<int>().ShouldBe(1, "the call ran on the new instance");
        onNew["allowed"]!.GetValue<bool>().ShouldBeTrue("the new instance denied an IP management added before it started");
        (await queued)["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    /// <summary>A release file a held call waits for (where the worker, its own uid on a root server, can look).</summary>
    private static string NewRelease()
    {
        var shared = Directory.CreateTempSubdirectory("pg-release-").FullName;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(shared, (UnixFileMode)0b111_101_101);
        return Path.Combine(shared, "release");
    }

    /// <summary>Sends a call held until <paramref name="release"/> exists and waits until the host counts <paramref name="pending"/> calls in all.</summary>
    private async Task<Task<JsonObject>> HeldCall(string function, string release, int pending)
    {
        var host = _server.Service<LocalFunctionHost>();
        var held = Check(function, "0.0.0.0", release);
        await Until(async () => (await host.StatusAsync(function, TestContext.Current.CancellationToken)) is { } s && s.Busy + s.Queued == pending);
        return held;
    }

    private async Task<int> JournalEntries(string function) =>
        (await _server.Service<IContextStore>().GetAsync($"function:{function}!journal", TestContext.Current.CancellationToken))?["entries"]?.AsArray().Count ?? 0;

    [Fact]
    public async Task With_autoscaling_the_journal_of_a_class_with_get_state_stays_short_and_instances_started_later_have_every_action()
    {
        // The journal dropped an entry only once every instance up to max_replicas had saved a state including it; the
        // instances autoscaling never started counted as having saved none, so it grew with every action, without bound,
        // and every restart replayed all of it.
        // Two instances held with a call each and a third answering: a worker each.
        await _server.DisposeAsync();
        _server = new GridServer { PythonWorkers = 4, Settings = { [NoPrivateTemp] = "false" } };
        _client = _server.CreateClient();
        var body = Body("wide-allow");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("wide-allow", CountingPolicy.AllowListKeepingState);
        body["autoscaling"] = new JsonObject { ["enabled"] = true, ["min_replicas"] = 1, ["max_replicas"] = 5 };
        (await Deploy(body)).Status.ShouldBe(200);
        var host = _server.Service<LocalFunctionHost>();
        var ips = Enumerable.Range(1, 12).Select(i => $"10.0.0.{i}").ToList();
        foreach (var ip in ips[..8]) (await AddIp("wide-allow", ip)).Status.ShouldBe(200);

        (await JournalEntries("wide-allow")).ShouldBeLessThanOrEqualTo(1, "instances #1..#4 never started, yet the journal kept every action for them");

        // Two calls on instance #0 (one held, one waiting): the next calls start instance #1, which has every action.
        var release = NewRelease();
        var held = new List<Task<JsonObject>> { await HeldCall("wide-allow", release, 1), await HeldCall("wide-allow", release, 2) };
        foreach (var ip in ips[..8]) (await Check("wide-allow", ip))["allowed"]!.GetValue<bool>().ShouldBeTrue($"instance #1 started later denied {ip}");
        (await host.StatusAsync("wide-allow", TestContext.Current.CancellationToken))!.Instances.ShouldBe(2);
        held.ShouldAllBe(h => !h.IsCompleted, "the calls ran on instance #1 while #0 was held");
        await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
        await Task.WhenAll(held);

        // Instance #1 has run; the actions after it reach both live instances and the journal stays short.
        foreach (var ip in ips[8..]) (await AddIp("wide-allow", ip)).Status.ShouldBe(200);
        (await JournalEntries("wide-allow")).ShouldBeLessThanOrEqualTo(1);

        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();
        host = _server.Service<LocalFunctionHost>();

        // After the restart: instance #0 held twice, the next call restarts #1; #1 held twice too, the next starts #2,
        // which never ran before. Each has every action.
        release = NewRelease();
        held = [await HeldCall("wide-allow", release, 1), await HeldCall("wide-allow", release, 2)];
        foreach (var ip in ips) (await Check("wide-allow", ip))["allowed"]!.GetValue<bool>().ShouldBeTrue($"instance #1 after the restart denied {ip}");
        held.Add(await HeldCall("wide-allow", release, 3));
        held.Add(await HeldCall("wide-allow", release, 4));
        foreach (var ip in ips) (await Check("wide-allow", ip))["allowed"]!.GetValue<bool>().ShouldBeTrue($"instance #2 started after the restart denied {ip}");
        (await host.StatusAsync("wide-allow", TestContext.Current.CancellationToken))!.Instances.ShouldBe(3);
        held.ShouldAllBe(h => !h.IsCompleted, "the calls ran on instance #2 while #0 and #1 were held");
        await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
        foreach (var answer in await Task.WhenAll(held)) answer["allowed"]!.GetValue<bool>().ShouldBeFalse();
        foreach (var ip in ips) (await Check("wide-allow", ip))["allowed"]!.GetValue<bool>().ShouldBeTrue($"instance #0 after the restart denied {ip}");
        (await JournalEntries("wide-allow")).ShouldBeLessThanOrEqualTo(1);
    }

    [Fact]
    public async Task With_autoscaling_instances_a_burst_started_do_not_hold_the_journal_back_once_stopped_and_have_every_action_when_they_start_again()
    {
        // An instance autoscaling stopped after a burst kept its saved state, and the journal kept every action after
        // that state's journal_seq for it: a burst that never came back left a class with get_state keeping every later
        // management action, without bound (20 actions after #1/#2 scaled down, 20 entries), and every restart replayed them.
        await _server.DisposeAsync();
        // The pool gives an instance key it has not seen (or dropped) the next worker in turn, busy or not: #1 and #2
        // started again take workers 3 and 4; with fewer, #2 would share held #0's worker and wait out its call.
        _server = new GridServer
        {
            PythonWorkers = 5,
            Settings = { ["PolicyGrid:Functions:ScaleDownAfterIdle"] = "00:00:00.200", [NoPrivateTemp] = "false" },
        };
        _client = _server.CreateClient();
        var body = Body("burst-allow");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("burst-allow", CountingPolicy.AllowListKeepingState);
        body["autoscaling"] = new JsonObject { ["enabled"] = true, ["min_replicas"] = 1, ["max_replicas"] = 3 };
        (await Deploy(body)).Status.ShouldBe(200);
        var ips = Enumerable.Range(1, 13).Select(i => $"10.0.0.{i}").ToList();
        foreach (var ip in ips[..3]) (await AddIp("burst-allow", ip)).Status.ShouldBe(200);

        // A burst: #0 held with two calls, so the next calls start #1 and check every IP there; #1 held with two, so the
        // next start #2 and check them there. Released, #2 and #1 are stopped after 200 ms idle. Answers the evals of #1's
        // first check and of its last call.
        async Task<(int First, int Last)> Burst(List<string> known)
        {
            var host = _server.Service<LocalFunctionHost>();
            var release = NewRelease();
            var onFirst = new List<Task<JsonObject>> { await HeldCall("burst-allow", release, 1), await HeldCall("burst-allow", release, 2) };
            var first = 0;
            foreach (var ip in known)
            {
                var answer = await Check("burst-allow", ip);
                answer["allowed"]!.GetValue<bool>().ShouldBeTrue($"instance #1 denied {ip}");
                if (first == 0) first = answer["evals"]!.GetValue<int>();
            }
            var onSecond = new List<Task<JsonObject>> { await HeldCall("burst-allow", release, 3), await HeldCall("burst-allow", release, 4) };
            foreach (var ip in known) (await Check("burst-allow", ip))["allowed"]!.GetValue<bool>().ShouldBeTrue($"instance #2 denied {ip}");
            (await host.StatusAsync("burst-allow", TestContext.Current.CancellationToken))!.Instances.ShouldBe(3);
            onFirst.Concat(onSecond).ShouldAllBe(h => !h.IsCompleted, "the checks ran on #1 and #2 while the calls held #0 and #1");
            await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
            await Task.WhenAll(onFirst);
            var last = (await Task.WhenAll(onSecond)).Max(a => a["evals"]!.GetValue<int>());
            await Until(async () => (await host.StatusAsync("burst-allow", TestContext.Current.CancellationToken))!.Instances == 1);
            return (first, last);
        }
        await Burst(ips[..3]);

        // #1 and #2 have saved states and are stopped: the actions after them are kept for #0 alone.
        foreach (var ip in ips[3..]) (await AddIp("burst-allow", ip)).Status.ShouldBe(200);
        (await JournalEntries("burst-allow")).ShouldBeLessThanOrEqualTo(1, "instances autoscaling stopped held the journal back");

        // Started again, #1 and #2 have every action: the journal lacks what follows their own states, so they start from
        // #0's state right after the newest action (two calls served) and apply what comes after.
        var (first, last) = await Burst(ips);
        first.ShouldBe(3, "instance #1 started again from instance #0's state, which has served two calls");
        (await JournalEntries("burst-allow")).ShouldBeLessThanOrEqualTo(1);

        // After a restart every instance resumes its own state, which has every action (the journal holds what follows it).
        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();
        (await Burst(ips)).First.ShouldBe(last + 1, "instance #1 resumed from its own saved state after the restart");
        foreach (var ip in ips) (await Check("burst-allow", ip))["allowed"]!.GetValue<bool>().ShouldBeTrue($"instance #0 after the restart denied {ip}");
        (await JournalEntries("burst-allow")).ShouldBeLessThanOrEqualTo(1);
    }

    [Fact]
    public async Task Management_that_changes_nothing_on_a_class_with_get_state_does_not_grow_the_journal()
    {
        // The instance's snapshot was not written again when an action left its state as it was (a status 'peek' not
        // declared read_only, a setting sent again), so the journal_seq it records stood still and the journal kept every
        // such action after it, without bound (a class with get_state is never refused by MaxJournalEntries).
        (await Deploy(Body("polled-counter"))).Status.ShouldBe(200);
        var set = await _client.Send(HttpMethod.Post, "/function/polled-counter/management",
            new JsonObject { ["action"] = "set", ["data"] = new JsonObject { ["count"] = 5 } });
        set.Status.ShouldBe(200, set.Body?.ToJsonString());
        for (var i = 0; i < 6; i++)
        {
            var peeked = await _client.Send(HttpMethod.Post, "/function/polled-counter/management", new JsonObject { ["action"] = "peek", ["data"] = new JsonObject() });
            peeked.Status.ShouldBe(200, peeked.Body?.ToJsonString());
        }

        (await JournalEntries("polled-counter")).ShouldBeLessThanOrEqualTo(1);
        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();
        (await Count("polled-counter")).ShouldBe(6);
    }

    [Fact]
    public async Task With_autoscaling_the_journal_of_a_class_without_get_state_keeps_every_action_for_instances_started_later()
    {
        var body = Body("wide-plain-allow");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("wide-plain-allow", CountingPolicy.AllowList);
        body["autoscaling"] = new JsonObject { ["enabled"] = true, ["min_replicas"] = 1, ["max_replicas"] = 5 };
        (await Deploy(body)).Status.ShouldBe(200);
        var ips = Enumerable.Range(1, 6).Select(i => $"10.0.0.{i}").ToList();
        foreach (var ip in ips) (await AddIp("wide-plain-allow", ip)).Status.ShouldBe(200);

        (await JournalEntries("wide-plain-allow")).ShouldBe(6, "an instance of a class without get_state can only replay them");

        var release = NewRelease();
        var held = new List<Task<JsonObject>> { await HeldCall("wide-plain-allow", release, 1), await HeldCall("wide-plain-allow", release, 2) };
        var onNew = await Check("wide-plain-allow", ips[0]);
        onNew["evals"]!.GetValue<int>().ShouldBe(1, "instance #1 started from the deployment");
        foreach (var ip in ips) (await Check("wide-plain-allow", ip))["allowed"]!.GetValue<bool>().ShouldBeTrue($"instance #1 started later denied {ip}");
        await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
        await Task.WhenAll(held);
        (await JournalEntries("wide-plain-allow")).ShouldBe(6);
    }

    [Fact]
    public async Task A_restart_brings_back_what_management_changed_on_an_instance_without_get_state()
    {
        var body = Body("plain-allow");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("plain-allow", CountingPolicy.AllowList);
        (await Deploy(body)).Status.ShouldBe(200);
        (await AddIp("plain-allow", "10.1.1.1")).Status.ShouldBe(200);
        (await AddIp("plain-allow", "10.2.2.2")).Status.ShouldBe(200);
        (await Check("plain-allow", "10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();

        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();

        var first = await Check("plain-allow", "10.1.1.1");
        first["allowed"]!.GetValue<bool>().ShouldBeTrue("the instance recreated after the restart lost the management actions");
        first["evals"]!.GetValue<int>().ShouldBe(1, "it started from the deployment, as a class without get_state does");
        (await Check("plain-allow", "10.2.2.2"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task A_command_the_policy_declares_read_only_is_not_journalled()
    {
        // A status action polled by monitoring went into the journal of a class without get_state on every call, and
        // every restart replayed all of them.
        var body = Body("polled-allow");
        var source = CountingPolicy.AllowList.Replace("if action == \"add_ip\":",
            "if action == \"list_ips\":\n            return {\"ips\": self.ips}\n        if action == \"add_ip\":");
        var uri = await _server.RegisterPolicyAsync("polled-allow", source);
        var commands = new JsonArray(new JsonObject { ["name"] = "add_ip" }, new JsonObject { ["name"] = "list_ips", ["read_only"] = true });
        (await _client.Send(HttpMethod.Put, $"/policy/{uri}", new JsonObject { ["$set"] = new JsonObject { ["management_commands_schema"] = commands } }))
            .Status.ShouldBe(200);
        body["policy_rule_uri"] = uri;
        (await Deploy(body)).Status.ShouldBe(200);
        (await AddIp("polled-allow", "10.1.1.1")).Status.ShouldBe(200);
        for (var i = 0; i < 3; i++)
        {
            var listed = await _client.Send(HttpMethod.Post, "/function/polled-allow/management", new JsonObject { ["action"] = "list_ips", ["data"] = new JsonObject() });
            listed.Status.ShouldBe(200, listed.Body?.ToJsonString());
        }

        var journal = await _server.Service<IContextStore>().GetAsync("function:polled-allow!journal", TestContext.Current.CancellationToken);
        journal!["entries"]!.AsArray().Select(e => e!["action"]!.GetValue<string>()).ShouldBe(["add_ip"]);
    }

    /// <summary>The allowlist without get_state, with a read-only list_ips next to add_ip in its management_commands_schema.</summary>
    private async Task<string> RegisterPolledAllowList(string name)
    {
        var source = CountingPolicy.AllowList.Replace("if action == \"add_ip\":",
            "if action == \"list_ips\":\n            return {\"ips\": self.ips}\n        if action == \"add_ip\":");
        var uri = await _server.RegisterPolicyAsync(name, source);
        var commands = new JsonArray(new JsonObject { ["name"] = "add_ip" }, new JsonObject { ["name"] = "list_ips", ["read_only"] = true });
        (await _client.Send(HttpMethod.Put, $"/policy/{uri}", new JsonObject { ["$set"] = new JsonObject { ["management_commands_schema"] = commands } }))
            .Status.ShouldBe(200);
        return uri;
    }

    [Fact]
    public async Task Past_the_journal_limit_management_of_a_class_without_get_state_is_a_409_that_changes_nothing_as_on_dapr()
    {
        // serve kept every management action of a class without get_state, without bound, and replayed them all on
        // every restart; the Dapr actors refuse past PolicyGrid:Functions:MaxJournalEntries.
        await _server.DisposeAsync();
        _server = new GridServer { Settings = { ["PolicyGrid:Functions:MaxJournalEntries"] = "2", [NoPrivateTemp] = "false" } };
        _client = _server.CreateClient();
        var body = Body("small-allow");
        body["policy_rule_uri"] = await RegisterPolledAllowList("small-allow");
        (await Deploy(body)).Status.ShouldBe(200);
        (await AddIp("small-allow", "10.1.1.1")).Status.ShouldBe(200);
        (await AddIp("small-allow", "10.2.2.2")).Status.ShouldBe(200);

        var full = await AddIp("small-allow", "10.3.3.3");

        full.Status.ShouldBe(409, full.Body?.ToJsonString());
        full.Code.ShouldBe("conflict");
        full.Message.ShouldContain("2 management actions are kept to replay");
        full.Message.ShouldContain("MaxJournalEntries");
        (await Check("small-allow", "10.3.3.3"))["allowed"]!.GetValue<bool>().ShouldBeFalse("the refused action ran on the instance");
        var journal = await _server.Service<IContextStore>().GetAsync("function:small-allow!journal", TestContext.Current.CancellationToken);
        journal!["entries"]!.AsArray().Count.ShouldBe(2);

        // A read-only command is not journalled, so it still runs at the limit.
        var listed = await _client.Send(HttpMethod.Post, "/function/small-allow/management", new JsonObject { ["action"] = "list_ips", ["data"] = new JsonObject() });
        listed.Status.ShouldBe(200, listed.Body?.ToJsonString());
        listed.Data!["ips"]!.AsArray().Select(n => n!.GetValue<string>()).ShouldBe(["10.1.1.1", "10.2.2.2"]);

        // The limit holds after a restart too (the instance that replays the journal tells the class keeps no state).
        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();
        (await AddIp("small-allow", "10.3.3.3")).Status.ShouldBe(409);
        (await Check("small-allow", "10.3.3.3"))["allowed"]!.GetValue<bool>().ShouldBeFalse();

        // A redeployment starts afresh with an empty journal.
        (await _client.Send(HttpMethod.Delete, "/function/deployments/remove/small-allow")).Status.ShouldBe(200);
        (await Deploy(body)).Status.ShouldBe(200);
        (await AddIp("small-allow", "10.3.3.3")).Status.ShouldBe(200);
        (await Check("small-allow", "10.3.3.3"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Management_of_a_class_with_get_state_is_never_refused_by_the_journal_limit()
    {
        await _server.DisposeAsync();
        _server = new GridServer { Settings = { ["PolicyGrid:Functions:MaxJournalEntries"] = "1", [NoPrivateTemp] = "false" } };
        _client = _server.CreateClient();
        var body = Body("keeping-allow", replicas: 2);
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("keeping-allow", CountingPolicy.AllowListKeepingState);
        (await Deploy(body)).Status.ShouldBe(200);
        for (var i = 1; i <= 3; i++) (await AddIp("keeping-allow", $"10.0.0.{i}")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task An_instance_without_get_state_the_pool_recreates_on_its_own_gets_the_management_actions_back()
    {
        // The pool drops instances on its own (eviction, a replaced worker); one of a class without get_state came back
        // from the deployment and answered without what management had changed.
        var body = Body("evicted-allow");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("evicted-allow", CountingPolicy.AllowList);
        (await Deploy(body)).Status.ShouldBe(200);
        (await AddIp("evicted-allow", "10.1.1.1")).Status.ShouldBe(200);
        (await Check("evicted-allow", "10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();

        await _server.Service<PythonWorkerPool>().ReleaseAsync("fn:evicted-allow#0", TestContext.Current.CancellationToken);

        var after = await Check("evicted-allow", "10.1.1.1");
        after["allowed"]!.GetValue<bool>().ShouldBeTrue("the instance the pool recreated lost the management action");
        after["evals"]!.GetValue<int>().ShouldBe(1, "the call runs once on the instance that has the journal replayed");
    }

    [Fact]
    public async Task An_instance_the_pool_recreates_whose_first_call_raises_for_lack_of_the_journal_gets_it_back_and_answers()
    {
        // The recreation was told only on a call that succeeded: one that raised on the new instance (here because its
        // allowlist was empty) left that instance running without the management actions, failing every call after.
        var body = Body("strict-evicted");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("strict-evicted", CountingPolicy.StrictAllowList);
        (await Deploy(body)).Status.ShouldBe(200);
        (await AddIp("strict-evicted", "10.1.1.1")).Status.ShouldBe(200);
        (await Check("strict-evicted", "10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        var pool = _server.Service<PythonWorkerPool>();

        await pool.ReleaseAsync("fn:strict-evicted#0", TestContext.Current.CancellationToken);
        var after = await Check("strict-evicted", "10.1.1.1");

        after["allowed"]!.GetValue<bool>().ShouldBeTrue();
        after["evals"]!.GetValue<int>().ShouldBe(1, "the answer comes from a fresh instance with the journal replayed");

        // A call that raises on its own still answers its error, once, from an instance that has the journal.
        await pool.ReleaseAsync("fn:strict-evicted#0", TestContext.Current.CancellationToken);
        var failed = await _client.Send(HttpMethod.Post, "/function/call_function/strict-evicted", new JsonObject { ["ip"] = "10.1.1.1", ["fail"] = true });
        failed.Status.ShouldBe(422, failed.Body?.ToJsonString());
        failed.Message.ShouldContain("asked to fail");
        var next = await Check("strict-evicted", "10.1.1.1");
        next["allowed"]!.GetValue<bool>().ShouldBeTrue("the instance the failed call left kept no management actions");
        // What the failed call changed on the instance (its count) goes with it: a fresh one replays the journal.
        next["evals"]!.GetValue<int>().ShouldBe(1, "the failed call left its change on the instance");
    }

    [Fact]
    public async Task An_instance_the_pool_drops_while_it_replays_the_journal_replays_it_afresh_each_entry_once()
    {
        // Dropped between two entries of a replay (evicted, a replaced worker), the instance came back without the
        // entries before; the host replayed the whole journal from inside the replay and then went on with it, so the
        // entries were applied twice (1, 10, 100 added up to 221).
        var body = Body("adder");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("adder", CountingPolicy.Adder);
        (await Deploy(body)).Status.ShouldBe(200);
        foreach (var data in new[] { """{"n": 1, "slow": true}""", """{"n": 10}""", """{"n": 100}""" })
            (await _client.Send(HttpMethod.Post, "/function/adder/management", new JsonObject { ["action"] = "add", ["data"] = JsonNode.Parse(data) }))
                .Status.ShouldBe(200);
        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();
        var pool = _server.Service<PythonWorkerPool>();
        var before = pool.RoundTrips;

        // The restarted instance replays the journal before the call; while its first (slow) entry runs, it is dropped.
        var call = _client.Send(HttpMethod.Post, "/function/call_function/adder", new JsonObject());
        await Until(() => Task.FromResult(pool.RoundTrips > before));
        await pool.ReleaseAsync("fn:adder#0", TestContext.Current.CancellationToken);
        var answer = await call;

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["total"]!.GetValue<int>().ShouldBe(111);
        (await _client.Send(HttpMethod.Post, "/function/call_function/adder", new JsonObject())).Data!["total"]!.GetValue<int>().ShouldBe(111);
    }

    [Fact]
    public async Task Management_failing_on_the_first_instance_is_the_answer_and_no_instance_gets_it()
    {
        var body = Body("strict-allow", replicas: 2);
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("strict-allow", CountingPolicy.AllowListKeepingState);
        (await Deploy(body)).Status.ShouldBe(200);
        await Check("strict-allow", "10.1.1.1"); // instance #0 has served one call; #1 none

        var refused = await AddIp("strict-allow", "10.1.1.1", refuseAfterEvals: 1);

        refused.Status.ShouldBe(422);
        refused.Message.ShouldContain("served 1 calls");
        var (held, release) = await HoldFirstReplica("strict-allow");
        (await Check("strict-allow", "10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeFalse("instance #1 got an action that failed on #0");
        await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
        await held;
        (await Check("strict-allow", "10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeFalse();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Management_that_succeeds_on_one_instance_and_fails_on_another_leaves_no_instance_without_it(bool keepsState)
    {
        var body = Body("split-allow", replicas: 2);
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("split-allow",
            keepsState ? CountingPolicy.AllowListKeepingState : CountingPolicy.AllowList);
        (await Deploy(body)).Status.ShouldBe(200);
        // Instance #0 serves one call, instance #1 two: add_ip refusing after 2 calls succeeds on #0 and fails on #1.
        var (held, release) = await HoldFirstReplica("split-allow");
        await Check("split-allow", "10.9.9.9");
        (await Check("split-allow", "10.9.9.9"))["evals"]!.GetValue<int>().ShouldBe(2);
        await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
        (await held)["evals"]!.GetValue<int>().ShouldBe(1);

        var added = await AddIp("split-allow", "10.1.1.1", refuseAfterEvals: 2);

        added.Status.ShouldBe(200, added.Body?.ToJsonString());
        (held, release) = await HoldFirstReplica("split-allow");
        var onSecond = await Check("split-allow", "10.1.1.1");
        await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
        await held;
        onSecond["allowed"]!.GetValue<bool>().ShouldBeTrue("instance #1 silently kept the old allowlist");
        // It was restarted: from instance #0's state (one call, plus this one), or from the deployment and the journal.
        onSecond["evals"]!.GetValue<int>().ShouldBe(keepsState ? 2 : 1);
        (await Check("split-allow", "10.1.1.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        _log.ToString().ShouldContain("instance #1 could not apply management 'add_ip'");
    }

    [Fact]
    public async Task After_a_restart_an_instance_that_cannot_apply_a_management_action_restarts_from_instance_0s_saved_state()
    {
        // The "restart from instance #0's state" seed lived only in memory: after a restart, an instance that had missed
        // the action (stopped by autoscaling) and could not apply it answered 422 on every call, for good.
        await _server.DisposeAsync();
        _server = new GridServer { Settings = { ["PolicyGrid:Functions:ScaleDownAfterIdle"] = "00:00:00.200", [NoPrivateTemp] = "false" } };
        _client = _server.CreateClient();
        var body = Body("elastic-allow");
        body["policy_rule_uri"] = await _server.RegisterPolicyAsync("elastic-allow", CountingPolicy.AllowListKeepingState);
        body["autoscaling"] = new JsonObject { ["enabled"] = true, ["min_replicas"] = 1, ["max_replicas"] = 2 };
        (await Deploy(body)).Status.ShouldBe(200);
        // Instance #0 holds a call and has one waiting: the next calls start instance #1 and run there, then it is stopped.
        async Task<Answer> OnSecondInstance(int calls)
        {
            var host = _server.Service<LocalFunctionHost>();
            var (held, release) = await HoldFirstReplica("elastic-allow");
            var queued = Check("elastic-allow", "10.9.9.9");
            await Until(async () => (await host.StatusAsync("elastic-allow", TestContext.Current.CancellationToken))!.Queued == 1);
            var answers = new List<Answer>();
            for (var i = 0; i < calls; i++)
                answers.Add(await _client.Send(HttpMethod.Post, "/function/call_function/elastic-allow", new JsonObject { ["ip"] = "10.1.1.1" }));
            (await host.StatusAsync("elastic-allow", TestContext.Current.CancellationToken))!.Instances.ShouldBe(2);
            await File.WriteAllTextAsync(release, "go", TestContext.Current.CancellationToken);
            await held;
            await queued;
            await Until(async () => (await host.StatusAsync("elastic-allow", TestContext.Current.CancellationToken))!.Instances == 1);
            return answers[^1];
        }
        (await OnSecondInstance(3)).Data!["evals"]!.GetValue<int>().ShouldBe(3);

        // add_ip runs on instance #0 (two calls served) only; on #1 (three) it fails.
        (await AddIp("elastic-allow", "10.1.1.1", refuseAfterEvals: 3)).Status.ShouldBe(200);
        await _server.ExitAsync();
        _server = _server.Restart();
        _client = _server.CreateClient();

        var onSecond = await OnSecondInstance(1);

        onSecond.Status.ShouldBe(200, onSecond.Body?.ToJsonString());
        onSecond.Data!["allowed"]!.GetValue<bool>().ShouldBeTrue();
        onSecond.Data!["evals"]!.GetValue<int>().ShouldBe(3, "restarted from instance #0's saved state (two calls), plus this one");
    }

    private static async Task Until(Func<Task<bool>> condition)
    {
        var giveUp = DateTime.UtcNow.AddSeconds(20);
        while (!await condition())
        {
            DateTime.UtcNow.ShouldBeLessThan(giveUp, "condition not reached in time");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task Query_finds_functions_by_filter()
    {
        (await Deploy(Body("q1"))).Status.ShouldBe(200);
        var other = Body("q2");
        other["function_tags"] = new JsonArray("other");
        (await Deploy(other)).Status.ShouldBe(200);

        var found = await _client.Send(HttpMethod.Post, "/function/query", new JsonObject { ["function_tags"] = "other" });

        found.Data!.AsArray().Select(f => f!["function_id"]!.GetValue<string>()).ShouldBe(["q2"]);
    }

    /// <summary>A node deployment as a registry forwards it: the function document with the policy snapshot.</summary>
    private async Task<JsonObject> NodeDeployment(string name)
    {
        var policy = (await _client.Send(HttpMethod.Get, $"/policy/{_policy}")).Data!.AsObject();
        return new JsonObject { ["function_id"] = name, ["function_policy_rule_uri"] = _policy, ["function_policy_data"] = policy.DeepClone(), ["replicas"] = 1 };
    }

    [Fact]
    public async Task The_node_api_refuses_a_snapshot_of_a_kind_this_runtime_does_not_run()
    {
        var body = await NodeDeployment("node_js");
        body["function_policy_data"]!["type"] = "javascript_v1";

        var refused = await _client.Send(HttpMethod.Post, "/deployments", body);

        refused.Status.ShouldBe(422, refused.Body?.ToJsonString());
        refused.Code.ShouldBe("policy_error");
        refused.Message.ShouldContain("'javascript_v1'");
        (await _client.Send(HttpMethod.Post, "/call_function/node_js", new JsonObject())).Status.ShouldBe(404);

        body["function_policy_data"]!.AsObject().Remove("type");
        var untyped = await _client.Send(HttpMethod.Post, "/deployments", body);
        untyped.Status.ShouldBe(400);
        untyped.Message.ShouldContain("function_policy_data.type");
    }

    [Fact]
    public async Task The_node_api_refuses_a_snapshot_of_another_policy_than_the_one_named()
    {
        var body = await NodeDeployment("node_other");
        body["function_policy_data"]!["policy_rule_uri"] = "someone_else:1.0-beta";

        var refused = await _client.Send(HttpMethod.Post, "/deployments", body);

        refused.Status.ShouldBe(400, refused.Body?.ToJsonString());
        refused.Message.ShouldContain($"function_policy_rule_uri '{_policy}'");
        refused.Message.ShouldContain("function_policy_data.policy_rule_uri 'someone_else:1.0-beta'");
        (await _client.Send(HttpMethod.Post, "/call_function/node_other", new JsonObject())).Status.ShouldBe(404);

        // The snapshot as the registry sends it deploys and runs.
        (await _client.Send(HttpMethod.Post, "/deployments", await NodeDeployment("node_ok"))).Status.ShouldBe(200);
        (await _client.Send(HttpMethod.Post, "/call_function/node_ok", new JsonObject())).Status.ShouldBe(200);
    }
}
