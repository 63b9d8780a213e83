using System.Collections.Concurrent;
using Dapr.Workflow;
using Dapr.Workflow.Abstractions;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Workflows;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// Graph workflow instances without a sidecar: records what was started and terminated, and answers each wait with
/// what the test's <c>end</c> makes of the started graph (it may also wait on the token, as a run that never ends).
/// </summary>
internal sealed class WorkflowInstancesDouble(Func<GraphWorkflowInput, CancellationToken, Task<GraphWorkflowEnd>> end) : IGraphWorkflowInstances
{
    private readonly ConcurrentDictionary<string, GraphWorkflowInput> _started = new();

    public IReadOnlyDictionary<string, GraphWorkflowInput> Started => _started;
    public ConcurrentQueue<string> Terminated { get; } = new();

    /// <summary>Runs the real <see cref="PolicyGraphWorkflow"/>, each node's activity answered by <paramref name="node"/>.</summary>
    public static WorkflowInstancesDouble RunningTheWorkflow(Func<NodeCallRequest, NodeCallResult> node) => new(async (graph, _) =>
    {
        var context = new WorkflowContextDouble(async (_, input) =>
        {
            await Task.Yield();
            return node((NodeCallRequest)input!);
        });
        return new GraphWorkflowEnd(WorkflowRuntimeStatus.Completed, await new PolicyGraphWorkflow().RunAsync(context, graph), null);
    });

    /// <summary>Runs the real <see cref="PolicyGraphWorkflow"/>, each node's call run by the real <paramref name="activity"/>.</summary>
    public static WorkflowInstancesDouble RunningTheWorkflowOn(PolicyGrid.Workflows.Activities.CallFunctionActivity activity) => new(async (graph, _) =>
    {
        var context = new WorkflowContextDouble(async (_, input) => await activity.RunAsync(new ActivityContext(), (NodeCallRequest)input!));
        return new GraphWorkflowEnd(WorkflowRuntimeStatus.Completed, await new PolicyGraphWorkflow().RunAsync(context, graph), null);
    });

    private sealed class ActivityContext : WorkflowActivityContext
    {
        public override TaskIdentifier Identifier => new(GraphWorkflows.CallNodeActivity);
        public override string TaskExecutionKey => "1";
        public override string InstanceId => "graph-test";
    }

    /// <summary>A run that never ends by itself: the wait lasts until its token is cancelled.</summary>
    public static WorkflowInstancesDouble NeverEnding(Exception? terminateFailure = null) => new(async (_, ct) =>
    {
        await Task.Delay(Timeout.Infinite, ct);
        throw new InvalidOperationException("unreachable: the delay only ends by cancellation");
    })
    { TerminateFailure = terminateFailure };

    /// <summary>A sidecar whose workflow client fails to schedule, with this gRPC status.</summary>
    public static WorkflowInstancesDouble FailingToStart(Grpc.Core.StatusCode status, string detail) =>
        new((_, _) => throw new InvalidOperationException("never waited on: the run never started"))
        {
            StartFailure = new Grpc.Core.RpcException(new Grpc.Core.Status(status, detail)),
        };

    public static WorkflowInstancesDouble EndingWith(WorkflowRuntimeStatus status, GraphWorkflowOutput? output, string? failure) =>
        new((_, _) => Task.FromResult(new GraphWorkflowEnd(status, output, failure)));

    /// <summary>Thrown by StartAsync (before anything is scheduled), as a sidecar that is down or refuses would.</summary>
    public Exception? StartFailure { get; init; }

    /// <summary>Thrown by TerminateAsync after recording the attempt.</summary>
    public Exception? TerminateFailure { get; init; }

    public static WorkflowInstancesDouble FailingToWait(Exception failure) => new((_, _) => Task.FromException<GraphWorkflowEnd>(failure));

    public Task StartAsync(string instanceId, GraphWorkflowInput graph, CancellationToken ct)
    {
        if (StartFailure is not null) return Task.FromException(StartFailure);
        _started.TryAdd(instanceId, graph).ShouldBeTrue($"instance id {instanceId} was started twice");
        return Task.CompletedTask;
    }

    public Task<GraphWorkflowEnd> WaitForEndAsync(string instanceId, CancellationToken ct) => end(_started[instanceId], ct);

    public Task TerminateAsync(string instanceId, CancellationToken ct)
    {
        Terminated.Enqueue(instanceId);
        return TerminateFailure is null ? Task.CompletedTask : Task.FromException(TerminateFailure);
    }
}
