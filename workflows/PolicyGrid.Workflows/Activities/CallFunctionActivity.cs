using System.Diagnostics;
using System.Text.Json.Nodes;
using Dapr.Actors.Client;
using Dapr.Workflow;
using PolicyGrid.Api.Functions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Dapr.Graphs;

namespace PolicyGrid.Workflows.Activities;

/// <summary>
/// Calls one graph node's function: its actor, or, for a function deployed on an <c>http(s)://</c> executor, that
/// executor node, through the registry's own transport (same client, node token and answer mapping as a direct call).
/// A function with several replicas is several actors; the activity picks one at random (activities, unlike
/// workflows, may be non-deterministic). Failures come back as data so the workflow can name the node and keep the
/// contract's status and code.
/// </summary>
public sealed class CallFunctionActivity(IActorProxyFactory actors, TimeProvider clock, RemoteFunctionHostTransport executorNodes)
    : WorkflowActivity<NodeCallRequest, NodeCallResult>
{
    public override async Task<NodeCallResult> RunAsync(WorkflowActivityContext context, NodeCallRequest call)
    {
        var started = clock.GetUtcNow();
        var watch = Stopwatch.StartNew();
        var reply = call.ExecutorUri is { } executor ? await CallExecutorNodeAsync(executor, call) : await CallActorAsync(call);
        return new NodeCallResult(reply.Ok, reply.OutputJson, reply.Status, reply.Code, reply.Message, started, watch.Elapsed.TotalMilliseconds);
    }

    private async Task<FunctionReply> CallActorAsync(NodeCallRequest call)
    {
        var replica = call.Replicas <= 1 ? 0 : Random.Shared.Next(call.Replicas);
        var actor = actors.CreateActorProxy<IPolicyFunctionActor>(FunctionActors.Replica(call.Node, replica, call.Replicas), FunctionActors.ActorType);
        try
        {
            return await actor.CallAsync(new FunctionActorCall(call.InputJson, call.Caller ?? "", call.GraphId ?? "", call.ExecutionId ?? ""));
        }
        catch (OperationCanceledException e)
        {
            // An activity has no cancellation of its own: this is the actor proxy giving up (its HttpClient timeout). Left
            // to escape, it failed the whole workflow with a 502 naming no node; as data it is this node's 503, which a
            // node retry policy may try again.
            return new FunctionReply(false, "", 503, "backend_unavailable", $"function actor did not answer in time: {e.Message}");
        }
        catch (Exception e)
        {
            // Worded and classed as the registry's own calls of the same actors answer it (ActorFunctionHost): the
            // functions app is down, a 503 the registry tells once for the function's executor, not once per run.
            return new FunctionReply(false, "", 503, "backend_unavailable", $"the functions app ({FunctionActors.AppId}) could not be reached: {e.Message}");
        }
    }

    private async Task<FunctionReply> CallExecutorNodeAsync(string executor, NodeCallRequest call)
    {
        try
        {
            var host = executorNodes.For(new Uri(executor));
            return FunctionReply.Success(await host.CallAsync(call.Node, JsonNode.Parse(call.InputJson)));
        }
        catch (PolicyGridException e)
        {
            // The node's answer (422 policy_error, 404, 504 ...) or its being unreachable (503), as a direct call has it.
            return FunctionReply.Failure(e);
        }
        catch (OperationCanceledException e)
        {
            // The node client's own timeout: as an actor proxy's, this node's 503 rather than a failed workflow naming no node.
            return new FunctionReply(false, "", 503, ErrorCodes.BackendUnavailable, $"executor node {executor} did not answer in time: {e.Message}");
        }
    }
}
