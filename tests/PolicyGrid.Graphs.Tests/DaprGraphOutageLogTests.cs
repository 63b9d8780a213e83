using System.Text.Json.Nodes;
using Dapr.Actors;
using Dapr.Actors.Client;
using Dapr.Workflow;
using Dapr.Workflow.Abstractions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Workflows;
using PolicyGrid.Workflows.Activities;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// What the registry's log says while the functions app behind a graph's nodes is down, in the Dapr shape: the registry
/// sends the run to the graphs app, whose workflow calls the function actors itself (the activity, through a proxy
/// factory standing in for the sidecar), so the registry hears of the outage only from the run's answer.
/// </summary>
public sealed class DaprGraphOutageLogTests
{
    [Fact]
    public async Task A_graph_whose_functions_app_is_down_is_one_warning_for_its_executor_not_one_per_run_and_one_line_when_it_is_back()
    {
        // Each run logged "POST /graph/execute_graph answered 502 backend_error: graph node 'far' failed: function actor
        // unreachable..." and the executor was never told down (a direct call of the same function was: once).
        var actors = new FunctionsApp();
        await using var graphsApp = await GraphsAppHost.StartAsync(RunningTheWorkflowOn(actors));
        var capture = new LogCapture();
        await using var server = graphsApp.Registry(actors, services: s => s.AddSingleton<ILoggerProvider>(capture));
        var client = await FarOnActorsAsync(server, """{"graph_name": "remote", "graph_version": "1.0", "graph_release_tag": "t", "graph_function_ids": ["far"], "graph_connection_data": {}}""");
        const string run = """{"graph_uri": "remote:1.0-t", "input_data": {"ip": "10.0.0.1"}}""";

        actors.Down = true;
        for (var i = 0; i < 3; i++)
        {
            var answer = await client.Post("/graph/execute_graph", run);
            (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString());
            answer.Message!.ShouldStartWith("graph node 'far' failed: the functions app (policy-functions) could not be reached");
        }
        var told = capture.WarningsButThePools();
        told.Count.ShouldBe(1, capture.ToString());
        told[0].Message.ShouldStartWith("executor fns is down; calls and management of its functions answer 503 until it answers again: the functions app (policy-functions) could not be reached");

        actors.Down = false;
        (await client.Post("/graph/execute_graph", run)).Status.ShouldBe(200);
        (await client.Post("/graph/execute_graph", run)).Status.ShouldBe(200);
        capture.Entries.Count(e => e.Message == "executor fns answers again").ShouldBe(1, capture.ToString());
        capture.WarningsButThePools().Count.ShouldBe(1, capture.ToString());
    }

    /// <summary>
    /// Function "far" deployed on executor "fns" (dapr://policy-functions, the actors) and <paramref name="graph"/> created
    /// over it; answers the registry's client.
    /// </summary>
    internal static async Task<HttpClient> FarOnActorsAsync(GridServer registry, string graph)
    {
        var client = registry.CreateClient();
        var uri = await registry.RegisterPolicyAsync("far", GridServer.EchoPolicy);
        (await client.Post("/executor", """{"executor_id": "fns", "executor_host_uri": "dapr://policy-functions"}""")).Status.ShouldBe(200);
        var deployed = await client.Post("/function/deployments/create/fns", $$"""{"name": "far", "policy_rule_uri": "{{uri}}"}""");
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        var created = await client.Post("/graphs", graph);
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        return client;
    }

    /// <summary>The graphs app's workflow engine running the real workflow, whose node activity calls the actors through <paramref name="actors"/>.</summary>
    internal static WorkflowInstancesDouble RunningTheWorkflowOn(IActorProxyFactory actors) =>
        WorkflowInstancesDouble.RunningTheWorkflowOn(new CallFunctionActivity(actors, TimeProvider.System, ExecutorNodes.Unused));

    /// <summary>The function actors as the sidecar reaches them: deployed and answering, or, while down, not reached at all.</summary>
    internal sealed class FunctionsApp : IActorProxyFactory
    {
        public volatile bool Down;

        public TActorInterface CreateActorProxy<TActorInterface>(ActorId actorId, string actorType, ActorProxyOptions? options = null) where TActorInterface : IActor =>
            (TActorInterface)(IPolicyFunctionActor)new Replica(this);
        public object CreateActorProxy(ActorId actorId, Type actorInterfaceType, string actorType, ActorProxyOptions? options = null) => throw new NotSupportedException();
        public ActorProxy Create(ActorId actorId, string actorType, ActorProxyOptions? options = null) => throw new NotSupportedException();

        private sealed class Replica(FunctionsApp app) : IPolicyFunctionActor
        {
            private Task<T> Reach<T>(Func<T> answer) => app.Down
                ? Task.FromException<T>(new HttpRequestException("Connection refused (127.0.0.1:3500)"))
                : Task.FromResult(answer());

            public Task<FunctionReply> DeployAsync(FunctionActorDeployment deployment) => Reach(() => FunctionReply.Success([]));
            public Task<FunctionReply> CallAsync(FunctionActorCall call) => Reach(() => FunctionReply.Success(new JsonObject { ["allowed"] = true }));
            public Task<FunctionReply> ManageAsync(FunctionActorManagement request) => Reach(() => FunctionReply.Success([]));
            public Task<FunctionReply> SnapshotAsync() => Reach(() => FunctionReply.Success([]));
            public Task<FunctionReply> RestartFromAsync(FunctionActorSnapshot snapshot) => Reach(() => FunctionReply.Success([]));
            public Task RemoveAsync() => Reach(() => true);
            public Task<FunctionActorStatus> StatusAsync() => Reach(() => new FunctionActorStatus(true, "far", 0));
        }
    }
}
