using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// Every Type 4 call and management action is in the decision log with the token's name as its caller, the function, the
/// policy it runs and the bundle of its snapshot: answered ones and refused ones (404, 400, 410, a raising policy's 422).
/// </summary>
public sealed class FunctionDecisionTests : IAsyncLifetime
{
    private const string Writer = "function-writer-token-0123456789";

    private readonly GridServer _server = new()
    {
        Settings =
        {
            ["PolicyGrid:Auth:Tokens:0:Name"] = "billing-service",
            ["PolicyGrid:Auth:Tokens:0:Token"] = Writer,
            ["PolicyGrid:Auth:Tokens:0:Scopes:0"] = "read",
            ["PolicyGrid:Auth:Tokens:0:Scopes:1"] = "write",
        },
    };

    private HttpClient _client = null!;
    private string _policy = "";
    private string _codeSha = "";

    public async ValueTask InitializeAsync()
    {
        _client = _server.ClientWith(Writer);
        var created = await _client.Send(HttpMethod.Post, "/policy", new JsonObject
        {
            ["name"] = "audited_counter",
            ["version"] = "1.0",
            ["release_tag"] = "test",
            ["code"] = await _server.StoreBundleAsync(CountingPolicy.Source),
            ["type"] = "python_class_v1",
            ["policy_input_schema"] = new JsonObject { ["fail"] = new JsonObject { ["type"] = "boolean", ["required"] = false } },
        });
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        _policy = "audited_counter:1.0-test";
        _codeSha = created.Data!["code_sha256"]!.GetValue<string>();
        var deployed = await _client.Send(HttpMethod.Post, "/function/deployments/create/local", new JsonObject
        {
            ["name"] = "audited",
            ["policy_rule_uri"] = _policy,
            ["replicas"] = 1,
        });
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    private async Task<JsonArray> Decisions(JsonObject filter)
    {
        var log = await _client.Send(HttpMethod.Post, "/decisions/query", filter);
        log.Status.ShouldBe(200, log.Body?.ToJsonString());
        return log.Data!.AsArray();
    }

    [Fact]
    public async Task A_function_call_and_a_management_action_are_recorded_with_the_token_name_function_policy_and_bundle()
    {
        (await _client.Send(HttpMethod.Post, "/function/call_function/audited", new JsonObject())).Status.ShouldBe(200);
        (await _client.Send(HttpMethod.Post, "/function/audited/management", new JsonObject { ["action"] = "peek", ["data"] = new JsonObject() })).Status.ShouldBe(200);

        var decisions = await Decisions(new JsonObject { ["function_id"] = "audited" });

        decisions.Count.ShouldBe(2);
        var management = decisions[0]!; // newest first
        var call = decisions[1]!;
        call["kind"]!.GetValue<string>().ShouldBe("function_call");
        management["kind"]!.GetValue<string>().ShouldBe("function_management");
        foreach (var d in decisions)
        {
            d!["caller"]!.GetValue<string>().ShouldBe("billing-service");
            d["policy_rule_uri"]!.GetValue<string>().ShouldBe(_policy);
            d["bundle_sha256"]!.GetValue<string>().ShouldBe(_codeSha);
            d["outcome"]!.GetValue<string>().ShouldBe("result");
            d["status"]!.GetValue<int>().ShouldBe(200);
            d["input_sha256"]!.GetValue<string>().Length.ShouldBe(64);
            d.AsObject().ContainsKey("graph_id").ShouldBeFalse("a direct call is no graph run's");
        }
        // Type 2 and functions share one log: a filter on the policy finds both kinds, one on the kind only these.
        (await Decisions(new JsonObject { ["kind"] = "function_call", ["policy_rule_uri"] = _policy })).Count.ShouldBe(1);
    }

    [Fact]
    public async Task Refused_and_failed_calls_are_recorded_with_their_status_and_code()
    {
        (await _client.Send(HttpMethod.Post, "/function/call_function/nowhere", new JsonObject())).Status.ShouldBe(404);
        (await _client.Send(HttpMethod.Post, "/function/call_function/audited", new JsonObject { ["fail"] = "yes" })).Status.ShouldBe(400);
        (await _client.Send(HttpMethod.Post, "/function/call_function/audited", new JsonObject { ["fail"] = true })).Status.ShouldBe(422);
        (await _client.Send(HttpMethod.Post, "/function/audited/management", new JsonObject { ["data"] = new JsonObject() })).Status.ShouldBe(400);

        var missing = (await Decisions(new JsonObject { ["function_id"] = "nowhere" })).ShouldHaveSingleItem()!;
        missing["status"]!.GetValue<int>().ShouldBe(404);
        missing["error_code"]!.GetValue<string>().ShouldBe("not_found");
        missing["outcome"]!.GetValue<string>().ShouldBe("error");
        missing["policy_rule_uri"]!.GetValue<string>().ShouldBe("", "no function, so no policy");
        missing["caller"]!.GetValue<string>().ShouldBe("billing-service");

        var failed = await Decisions(new JsonObject { ["function_id"] = "audited", ["outcome"] = "error" });
        failed.Select(d => (d!["kind"]!.GetValue<string>(), d["status"]!.GetValue<int>())).ShouldBe(
            [("function_management", 400), ("function_call", 422), ("function_call", 400)]);
    }

    [Fact]
    public async Task A_call_refused_because_the_policy_is_retired_is_a_410_record_with_no_bundle()
    {
        (await _client.Send(HttpMethod.Put, $"/policy/{_policy}", new JsonObject { ["$set"] = new JsonObject { ["status"] = "retired" } })).Status.ShouldBe(200);
        (await _client.Send(HttpMethod.Post, "/function/call_function/audited", new JsonObject())).Status.ShouldBe(410);

        var retired = (await Decisions(new JsonObject { ["function_id"] = "audited" })).ShouldHaveSingleItem()!;
        retired["status"]!.GetValue<int>().ShouldBe(410);
        retired["error_code"]!.GetValue<string>().ShouldBe("retired");
        retired["policy_rule_uri"]!.GetValue<string>().ShouldBe(_policy);
        retired["bundle_sha256"]!.GetValue<string>().ShouldBe("", "nothing ran");
    }
}

/// <summary>
/// On a host that records the calls reaching it itself (the Dapr function actors, writing to the registry's store), the
/// registry records only what did not reach it: each call is in the log once, never twice and never not at all.
/// </summary>
public sealed class SelfRecordingHostDecisionTests : IAsyncLifetime
{
    private readonly SelfRecordingHost _host = new();
    private GridServer _server = null!;
    private HttpClient _client = null!;

    public async ValueTask InitializeAsync()
    {
        _server = new GridServer { TestServices = services => services.AddSingleton<IFunctionHostTransport>(new SelfRecordingTransport(_host)) };
        _client = _server.CreateClient();
        var policy = await _server.RegisterPolicyAsync("self_recorded", CountingPolicy.Source);
        await _server.StoreExecutorAsync("actors", "dapr://policy-functions");
        (await _client.Send(HttpMethod.Post, "/function/deployments/create/actors", new JsonObject { ["name"] = "acted", ["policy_rule_uri"] = policy })).Status.ShouldBe(200);
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task A_call_the_host_ran_is_left_to_it_and_one_it_never_got_is_recorded_here()
    {
        (await _client.Send(HttpMethod.Post, "/function/call_function/acted", new JsonObject())).Status.ShouldBe(200);
        _host.Down = true;
        (await _client.Send(HttpMethod.Post, "/function/call_function/acted", new JsonObject())).Status.ShouldBe(503);
        (await _client.Send(HttpMethod.Post, "/function/call_function/nothing_here", new JsonObject())).Status.ShouldBe(404);
        _host.Down = false;
        (await _client.Send(HttpMethod.Post, "/function/acted/management", new JsonObject { ["action"] = "peek" })).Status.ShouldBe(200);

        var log = (await _client.Send(HttpMethod.Post, "/decisions/query", new JsonObject { ["kind"] = new JsonObject { ["$in"] = new JsonArray("function_call", "function_management") } })).Data!.AsArray();

        log.Select(d => (d!["function_id"]!.GetValue<string>(), d["kind"]!.GetValue<string>(), d["status"]!.GetValue<int>())).ShouldBe(
            [("acted", "function_management", 200), ("nothing_here", "function_call", 404), ("acted", "function_call", 503)],
            "the answered call is the host's to record; management is the registry's (only it knows how every replica took it)");
        _host.Origins.Single().Caller.ShouldBe("anonymous", "the caller travels to the host with the call");
    }

    private sealed class SelfRecordingTransport(SelfRecordingHost host) : IFunctionHostTransport
    {
        public bool CanHandle(Uri executorHostUri) => executorHostUri.Scheme == "dapr";
        public IFunctionHost For(Uri executorHostUri) => host;
    }

    private sealed class SelfRecordingHost : IFunctionHost
    {
        public volatile bool Down;
        public System.Collections.Concurrent.ConcurrentQueue<FunctionCallOrigin> Origins { get; } = new();

        public bool RecordsCalls => true;
        public Task DeployAsync(FunctionSpec spec, CancellationToken ct = default) => Task.CompletedTask;
        public Task<JsonObject> CallAsync(string name, JsonNode? input, CancellationToken ct = default) => throw new InvalidOperationException("the registry passes who asked");
        public Task<JsonObject> CallAsync(string name, JsonNode? input, FunctionCallOrigin origin, CancellationToken ct)
        {
            if (Down) throw Problems.BackendUnavailable("the functions app could not be reached");
            Origins.Enqueue(origin);
            return Task.FromResult(new JsonObject { ["count"] = 1 });
        }
        public Task<JsonObject> ManageAsync(string name, string action, JsonObject data, CancellationToken ct = default) => Task.FromResult(new JsonObject { ["count"] = 1 });
        public Task<bool> RemoveAsync(string name, CancellationToken ct = default) => Task.FromResult(true);
        public Task<FunctionHostStatus?> StatusAsync(string name, CancellationToken ct = default) => Task.FromResult<FunctionHostStatus?>(new FunctionHostStatus(name, 1, 0, 0, 0));
    }
}

/// <summary>
/// A 503 the function actor answered itself (its policy's status or its state store unreadable) reached the actor, which
/// recorded it: the registry read it as the functions app unreachable and recorded the call a second time.
/// </summary>
public sealed class ActorAnswered503DecisionTests : IAsyncLifetime
{
    private readonly Unavailable503Actors _actors = new();
    private GridServer _server = null!;
    private HttpClient _client = null!;

    public async ValueTask InitializeAsync()
    {
        _server = new GridServer
        {
            TestServices = services => services.AddSingleton<IFunctionHostTransport>(sp =>
                new PolicyGrid.Dapr.Functions.ActorFunctionHostTransport(new PolicyGrid.Dapr.Functions.ActorFunctionHost(_actors, sp.GetRequiredService<IDocumentStore>()))),
        };
        _client = _server.CreateClient();
        var policy = await _server.RegisterPolicyAsync("actor_503", CountingPolicy.Source);
        await _server.StoreExecutorAsync("actors", "dapr://policy-functions");
        var deployed = await _client.Send(HttpMethod.Post, "/function/deployments/create/actors", new JsonObject { ["name"] = "acted", ["policy_rule_uri"] = policy });
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task A_503_the_actor_answered_is_the_actor_s_record_not_one_more_in_the_registry()
    {
        var answer = await _client.Send(HttpMethod.Post, "/function/call_function/acted", new JsonObject());
        answer.Status.ShouldBe(503, answer.Body?.ToJsonString());
        answer.Body!["message"]!.GetValue<string>().ShouldContain("the actor state store did not take what the call changed");
        _actors.Calls.ShouldBe(1, "the call reached the actor, which records every call reaching it");

        var log = (await _client.Send(HttpMethod.Post, "/decisions/query", new JsonObject { ["kind"] = "function_call" })).Data!.AsArray();
        log.ShouldBeEmpty("the actor recorded this call; the registry recorded it again");
    }

    /// <summary>Actors that deploy, then answer every call with their own 503 (as PolicyFunctionActor does when its state store refuses).</summary>
    private sealed class Unavailable503Actors : global::Dapr.Actors.Client.IActorProxyFactory, PolicyGrid.Dapr.Functions.IPolicyFunctionActor
    {
        private int _calls;
        public int Calls => Volatile.Read(ref _calls);

        public TActorInterface CreateActorProxy<TActorInterface>(global::Dapr.Actors.ActorId actorId, string actorType, global::Dapr.Actors.Client.ActorProxyOptions? options = null)
            where TActorInterface : global::Dapr.Actors.IActor => (TActorInterface)(PolicyGrid.Dapr.Functions.IPolicyFunctionActor)this;
        public object CreateActorProxy(global::Dapr.Actors.ActorId actorId, Type actorInterfaceType, string actorType, global::Dapr.Actors.Client.ActorProxyOptions? options = null) => throw new NotSupportedException();
        public global::Dapr.Actors.Client.ActorProxy Create(global::Dapr.Actors.ActorId actorId, string actorType, global::Dapr.Actors.Client.ActorProxyOptions? options = null) => throw new NotSupportedException();

        public Task<PolicyGrid.Dapr.Functions.FunctionReply> DeployAsync(PolicyGrid.Dapr.Functions.FunctionActorDeployment deployment) =>
            Task.FromResult(PolicyGrid.Dapr.Functions.FunctionReply.Success([]));
        public Task<PolicyGrid.Dapr.Functions.FunctionReply> CallAsync(PolicyGrid.Dapr.Functions.FunctionActorCall call)
        {
            Interlocked.Increment(ref _calls);
            return Task.FromResult(PolicyGrid.Dapr.Functions.FunctionReply.Failure(Problems.BackendUnavailable(
                "function acted: the actor state store did not take what the call changed (timeout); it may or may not have been saved")));
        }
        public Task<PolicyGrid.Dapr.Functions.FunctionReply> ManageAsync(PolicyGrid.Dapr.Functions.FunctionActorManagement request) =>
            Task.FromResult(PolicyGrid.Dapr.Functions.FunctionReply.Success([]));
        public Task<PolicyGrid.Dapr.Functions.FunctionReply> SnapshotAsync() => Task.FromResult(PolicyGrid.Dapr.Functions.FunctionReply.Success([]));
        public Task<PolicyGrid.Dapr.Functions.FunctionReply> RestartFromAsync(PolicyGrid.Dapr.Functions.FunctionActorSnapshot snapshot) =>
            Task.FromResult(PolicyGrid.Dapr.Functions.FunctionReply.Success([]));
        public Task RemoveAsync() => Task.CompletedTask;
        public Task<PolicyGrid.Dapr.Functions.FunctionActorStatus> StatusAsync() => Task.FromResult(new PolicyGrid.Dapr.Functions.FunctionActorStatus(true, "acted", 0));
    }
}
