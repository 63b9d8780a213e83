using System.Diagnostics;
using Dapr.Actors.Client;
using Dapr.Workflow;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Dapr.Graphs;

namespace PolicyGrid.Workflows.Activities;

/// <summary>
/// Calls one graph node's function actor. A function with several replicas is several actors; the activity picks
/// one at random (activities, unlike workflows, may be non-deterministic). Failures come back as data so the
/// workflow can name the node and keep the contract's status and code.
/// </summary>
public sealed class CallFunctionActivity(IActorProxyFactory actors, TimeProvider clock) : WorkflowActivity<NodeCallRequest, NodeCallResult>
{
    public override async Task<NodeCallResult> RunAsync(WorkflowActivityContext context, NodeCallRequest call)
    {
        var replica = call.Replicas <= 1 ? 0 : Random.Shared.Next(call.Replicas);
        var actor = actors.CreateActorProxy<IPolicyFunctionActor>(FunctionActors.Replica(call.Node, replica, call.Replicas), FunctionActors.ActorType);
        var started = clock.GetUtcNow();
        var watch = Stopwatch.StartNew();
        FunctionReply reply;
        try
        {
            reply = await actor.CallAsync(new FunctionActorCall(call.InputJson));
        }
        catch (OperationCanceledException e)
        {
            // An activity has no cancellation of its own: this is the actor proxy giving up (its HttpClient timeout). Left
            // to escape, it failed the whole workflow with a 502 naming no node; as data it is this node's 503, which a
            // node retry policy may try again.
            reply = new FunctionReply(false, "", 503, "backend_unavailable", $"function actor did not answer in time: {e.Message}");
        }
        catch (Exception e)
        {
            // Worded and classed as the registry's own calls of the same actors answer it (ActorFunctionHost): the
            // functions app is down, a 503 the registry tells once for the function's executor, not once per run.
            reply = new FunctionReply(false, "", 503, "backend_unavailable", $"the functions app ({FunctionActors.AppId}) could not be reached: {e.Message}");
        }
        return new NodeCallResult(reply.Ok, reply.OutputJson, reply.Status, reply.Code, reply.Message, started, watch.Elapsed.TotalMilliseconds);
    }
}
