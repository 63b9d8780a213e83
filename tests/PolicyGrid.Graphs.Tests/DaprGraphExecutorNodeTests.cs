using System.Text.Json.Nodes;
using Dapr.Actors;
using Dapr.Actors.Client;
using Dapr.Workflow;
using Dapr.Workflow.Abstractions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Functions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Runtime;
using PolicyGrid.Workflows;
using PolicyGrid.Workflows.Activities;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// A graph whose nodes are functions on an http(s) executor node, in the Dapr shape: the registry sends the run to the
/// graphs app, whose workflow (composed as <see cref="GraphWorkflowModule.AddPolicyGraphWorkflow"/> composes it) must call
/// that node, as the registry's direct call of the same function does, not an actor in the functions app that never
/// heard of it.
/// </summary>
public sealed class DaprGraphExecutorNodeTests
{
    private const string NodeToken = "node-token-for-the-graphs-0123456789";

    private const string FarPolicy = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                if input_data.get("fail"):
                    raise RuntimeError("far was asked to fail")
                context["calls"] = context.get("calls", 0) + 1
                return {"far_got": input_data, "calls": context["calls"]}
        """;

    [Fact]
    public async Task A_graph_node_on_an_http_executor_runs_on_that_node_and_fails_as_a_direct_call_of_it_does()
    {
        // Every run answered 404 "graph node 'far' failed: function 'far' is not deployed": the workflow called an actor
        // in policy-functions for every node, and a function deployed on an http(s) executor is not one.
        var ct = TestContext.Current.CancellationToken;
        var node = await TokenNode.StartAsync("graphs", NodeToken, ct);
        await using var _ = node;
        var actors = new FunctionsApp("near");
        await using var graphsApp = await GraphsAppHost.StartAsync(WorkflowInstancesDouble.RunningTheWorkflowOn(GraphsAppActivity(actors)));
        await using var registry = graphsApp.Registry(actors, new() { ["PolicyGrid:Runtime:RemoteExecutors:Token"] = NodeToken });
        var client = registry.CreateClient();

        var near = await registry.RegisterPolicyAsync("near", GridServer.EchoPolicy);
        var far = await registry.RegisterPolicyAsync("far", FarPolicy);
        (await client.Post("/executor", """{"executor_id": "fns", "executor_host_uri": "dapr://policy-functions"}""")).Status.ShouldBe(200);
        (await client.Post("/executor", $$"""{"executor_id": "edge", "executor_host_uri": "{{node.Url}}"}""")).Status.ShouldBe(200);
        (await client.Post("/function/deployments/create/fns", $$"""{"name": "near", "policy_rule_uri": "{{near}}"}""")).Status.ShouldBe(200);
        var deployed = await client.Post("/function/deployments/create/edge", $$"""{"name": "far", "policy_rule_uri": "{{far}}"}""");
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        var created = await client.Post("/graphs", """
            {"graph_name": "mixed", "graph_version": "1.0", "graph_release_tag": "t", "graph_function_ids": ["near", "far"],
             "graph_connection_data": {"near": ["far"]}}
            """);
        created.Status.ShouldBe(200, created.Body?.ToJsonString());

        var ran = await client.Post("/graph/execute_graph", """{"graph_uri": "mixed:1.0-t", "input_data": {"ip": "10.0.0.1"}}""");

        ran.Status.ShouldBe(200, ran.Body?.ToJsonString());
        ran.Data!["far_got"]!["near"]!.GetValue<bool>().ShouldBeTrue(); // the actor's output went on to the node
        ran.Data!["far_got"]!["ip"]!.GetValue<string>().ShouldBe("10.0.0.1");
        // The node's own instance ran it (its context counts the call), as a direct call reaches it.
        (await client.Post("/function/call_function/far", "{}")).Data!["calls"]!.GetValue<int>().ShouldBe(2);

        // The node's failure keeps its status, code and message, named for the node: a direct call's answer, prefixed.
        var direct = await client.Post("/function/call_function/far", """{"fail": true}""");
        (direct.Status, direct.Code).ShouldBe((422, ErrorCodes.PolicyError));
        var failed = await client.Post("/graph/execute_graph", """{"graph_uri": "mixed:1.0-t", "input_data": {"fail": true}}""");
        (failed.Status, failed.Code).ShouldBe((422, ErrorCodes.PolicyError), failed.Body?.ToJsonString());
        failed.Message.ShouldBe($"graph node 'far' failed: {direct.Message}");

        // A node that is gone is that node's 503, as the direct call's, so node_retry and the outage log treat it alike.
        await node.DisposeAsync();
        var down = await client.Post("/graph/execute_graph", """{"graph_uri": "mixed:1.0-t", "input_data": {}}""");
        (down.Status, down.Code).ShouldBe((503, ErrorCodes.BackendUnavailable), down.Body?.ToJsonString());
        down.Message.ShouldStartWith($"graph node 'far' failed: executor node {node.Url.TrimEnd('/')}/ is unreachable");
    }

    [Fact]
    public void A_run_body_naming_an_executor_that_is_not_an_http_node_or_not_a_node_of_the_graph_is_a_400_naming_it()
    {
        var graph = new GraphWorkflowInput(["a"], new Dictionary<string, IReadOnlyList<string>>(), new Dictionary<string, int>(), "{}", 4,
            Executors: new Dictionary<string, string> { ["a"] = "dapr://policy-functions", ["b"] = "http://edge:8080" });
        var body = JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(new GraphRunRequest(graph, 10), PolicyGrid.Core.Documents.Json.Options));

        var refused = Should.Throw<PolicyGridException>(() => GraphRunRequest.FromJson(body));

        refused.Status.ShouldBe(400);
        refused.Errors.Select(e => e.Path).ShouldBe(["graph.executors.a", "graph.executors.b"], ignoreOrder: true);
    }

    /// <summary>The graphs app's activity, built from the graphs app's own composition and configuration (its node token).</summary>
    private static CallFunctionActivity GraphsAppActivity(IActorProxyFactory actors)
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["PolicyGrid:Runtime:RemoteExecutors:Token"] = NodeToken }).Build());
        services.AddLogging();
        services.AddPolicyGraphWorkflow();
        var provider = services.BuildServiceProvider();
        return ActivatorUtilities.CreateInstance<CallFunctionActivity>(provider, actors);
    }

    /// <summary>
    /// The functions app as the sidecar reaches it: its actors for the functions deployed there answer their input with
    /// <c>near: true</c>; any other actor answers as a real one that was never deployed does.
    /// </summary>
    private sealed class FunctionsApp(params string[] hosted) : IActorProxyFactory
    {
        public TActorInterface CreateActorProxy<TActorInterface>(ActorId actorId, string actorType, ActorProxyOptions? options = null) where TActorInterface : IActor =>
            (TActorInterface)(IPolicyFunctionActor)new Replica(FunctionActors.FunctionName(actorId), hosted.Contains(FunctionActors.FunctionName(actorId)));
        public object CreateActorProxy(ActorId actorId, Type actorInterfaceType, string actorType, ActorProxyOptions? options = null) => throw new NotSupportedException();
        public ActorProxy Create(ActorId actorId, string actorType, ActorProxyOptions? options = null) => throw new NotSupportedException();

        private sealed class Replica(string name, bool deployed) : IPolicyFunctionActor
        {
            private Task<FunctionReply> Answer(Func<FunctionReply> reply) =>
                Task.FromResult(deployed ? reply() : FunctionReply.Failure(Problems.NotFound($"function '{name}' is not deployed")));

            public Task<FunctionReply> DeployAsync(FunctionActorDeployment deployment) => Task.FromResult(FunctionReply.Success([]));
            public Task<FunctionReply> CallAsync(FunctionActorCall call) => Answer(() =>
            {
                var output = JsonNode.Parse(call.InputJson) as JsonObject ?? [];
                output["near"] = true;
                return FunctionReply.Success(output);
            });
            public Task<FunctionReply> ManageAsync(FunctionActorManagement request) => Answer(() => FunctionReply.Success([]));
            public Task<FunctionReply> SnapshotAsync() => Answer(() => FunctionReply.Success([]));
            public Task<FunctionReply> RestartFromAsync(FunctionActorSnapshot snapshot) => Answer(() => FunctionReply.Success([]));
            public Task RemoveAsync() => Task.CompletedTask;
            public Task<FunctionActorStatus> StatusAsync() => Task.FromResult(new FunctionActorStatus(deployed, name, 0));
        }
    }
}

/// <summary>The executor node transport for activities whose tests reach no executor node.</summary>
internal static class ExecutorNodes
{
    public static RemoteFunctionHostTransport Unused { get; } = new(
        new ServiceCollection().AddHttpClient().BuildServiceProvider().GetRequiredService<IHttpClientFactory>(),
        Options.Create(new PolicyRuntimeOptions()));
}
