using System.Text.Json.Nodes;
using Dapr.Actors;
using Dapr.Actors.Client;
using Dapr.Workflow;
using Dapr.Workflow.Abstractions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Workflows.Activities;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>The activity that calls a node's function actor: whatever the proxy throws comes back as that node's result.</summary>
public sealed class CallFunctionActivityTests
{
    [Fact]
    public void A_graph_node_waits_for_its_actor_as_long_as_a_direct_call_of_the_function_does()
    {
        // The graphs app's proxies had the SDK's default timeout (100 s): a node whose function ran longer, within
        // Execution:MaxTimeout, was this node's 503 while the actor still ran it, though the registry's call would wait.
        var services = new Microsoft.Extensions.DependencyInjection.ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["PolicyGrid:Runtime:Execution:MaxTimeout"] = "00:10:00" }).Build());
        services.AddLogging();
        PolicyGrid.Workflows.GraphWorkflowModule.AddPolicyGraphWorkflow(services);
        using var provider = services.BuildServiceProvider();

        var proxies = (ActorProxyFactory)provider.GetRequiredService<IActorProxyFactory>();
        var registry = new ActorFunctionHost(proxies, null!, provider.GetRequiredService<Microsoft.Extensions.Options.IOptions<PolicyGrid.Runtime.PolicyRuntimeOptions>>());

        proxies.DefaultOptions.RequestTimeout.ShouldBe(registry.RequestTimeout);
        registry.RequestTimeout.ShouldBeGreaterThan(TimeSpan.FromMinutes(10));
    }

    [Fact]
    public async Task An_actor_call_the_proxy_gives_up_on_is_the_nodes_503_not_a_failed_workflow()
    {
        // The actor proxy's HttpClient times out with a TaskCanceledException; it used to escape the activity and fail
        // the whole workflow, which the registry reported as a 502 naming no node.
        var activity = new CallFunctionActivity(new ThrowingActors(new TaskCanceledException("The request was canceled due to the configured HttpClient.Timeout of 100 seconds elapsing.")), TimeProvider.System, ExecutorNodes.Unused);

        var result = await activity.RunAsync(new Context(), new NodeCallRequest("B", 1, "{}"));

        (result.Ok, result.Status, result.Code).ShouldBe((false, 503, "backend_unavailable"));
        result.Message.ShouldContain("HttpClient.Timeout");
    }

    [Fact]
    public async Task A_direct_call_the_registrys_proxy_gives_up_on_is_a_503_as_a_nodes_is()
    {
        // The registry's ActorFunctionHost let the proxy's TaskCanceledException escape: call_function answered 500.
        var data = Directory.CreateTempSubdirectory("pg-actor-host-");
        try
        {
            await using var storage = new ServiceCollection().AddEmbeddedStorage(data.FullName).BuildServiceProvider();
            var store = storage.GetRequiredService<IDocumentStore>();
            await store.UpsertAsync(Collections.Functions, "B",
                new JsonObject { ["function_id"] = "B", ["function_policy_rule_uri"] = "node:1.0-test", ["replicas"] = 1 }, TestContext.Current.CancellationToken);
            var host = new ActorFunctionHost(new ThrowingActors(new TaskCanceledException("The request was canceled due to the configured HttpClient.Timeout of 100 seconds elapsing.")), store);

            var failure = await Should.ThrowAsync<PolicyGridException>(() => host.CallAsync("B", new JsonObject(), TestContext.Current.CancellationToken));

            (failure.Status, failure.Code).ShouldBe((503, "backend_unavailable"));
            failure.Message.ShouldContain("HttpClient.Timeout");
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task An_actor_that_cannot_be_reached_is_the_nodes_503_as_the_registrys_own_call_of_it_is()
    {
        // It was a 502 backend_error, which the registry could not tell from a failure the actor answered: the functions
        // app being down was never told for the function's executor, and every run logged a warning of its own.
        var activity = new CallFunctionActivity(new ThrowingActors(new ActorMethodInvocationException("connection refused", false)), TimeProvider.System, ExecutorNodes.Unused);

        var result = await activity.RunAsync(new Context(), new NodeCallRequest("B", 2, "{}"));

        (result.Ok, result.Status, result.Code).ShouldBe((false, 503, "backend_unavailable"));
        result.Message.ShouldBe("the functions app (policy-functions) could not be reached: connection refused");
    }

    private sealed class Context : WorkflowActivityContext
    {
        public override TaskIdentifier Identifier => new(GraphWorkflows.CallNodeActivity);
        public override string TaskExecutionKey => "1";
        public override string InstanceId => "graph-test";
    }

    private sealed class ThrowingActors(Exception error) : IActorProxyFactory
    {
        public TActorInterface CreateActorProxy<TActorInterface>(ActorId actorId, string actorType, ActorProxyOptions? options = null) where TActorInterface : IActor =>
            (TActorInterface)(IPolicyFunctionActor)new Throwing(error);
        public object CreateActorProxy(ActorId actorId, Type actorInterfaceType, string actorType, ActorProxyOptions? options = null) => throw new NotSupportedException();
        public ActorProxy Create(ActorId actorId, string actorType, ActorProxyOptions? options = null) => throw new NotSupportedException();

        private sealed class Throwing(Exception error) : IPolicyFunctionActor
        {
            public Task<FunctionReply> DeployAsync(FunctionActorDeployment deployment) => throw error;
            public Task<FunctionReply> CallAsync(FunctionActorCall call) => Task.FromException<FunctionReply>(error);
            public Task<FunctionReply> ManageAsync(FunctionActorManagement request) => throw error;
            public Task<FunctionReply> SnapshotAsync() => throw error;
            public Task<FunctionReply> RestartFromAsync(FunctionActorSnapshot snapshot) => throw error;
            public Task RemoveAsync() => throw error;
            public Task<FunctionActorStatus> StatusAsync() => throw error;
        }
    }
}
