using Dapr.Workflow;

namespace PolicyGrid.Dapr.Graphs;

/// <summary><c>PolicyGraphWorkflow</c> instances on this app's sidecar, through Dapr's workflow client.</summary>
public sealed class DaprGraphWorkflowInstances(DaprWorkflowClient workflows) : IGraphWorkflowInstances
{
    public Task StartAsync(string instanceId, GraphWorkflowInput graph, CancellationToken ct) =>
        workflows.ScheduleNewWorkflowAsync(GraphWorkflows.WorkflowName, instanceId, graph, startTime: null, ct);

    public async Task<GraphWorkflowEnd> WaitForEndAsync(string instanceId, CancellationToken ct)
    {
        var state = await workflows.WaitForWorkflowCompletionAsync(instanceId, getInputsAndOutputs: true, ct);
        var output = state.RuntimeStatus == WorkflowRuntimeStatus.Completed ? state.ReadOutputAs<GraphWorkflowOutput>() : null;
        return new GraphWorkflowEnd(state.RuntimeStatus, output, state.FailureDetails?.ErrorMessage);
    }

    public Task TerminateAsync(string instanceId, CancellationToken ct) => workflows.TerminateWorkflowAsync(instanceId, null, ct);
}
