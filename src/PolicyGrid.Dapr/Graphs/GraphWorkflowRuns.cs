using Dapr.Workflow;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr.Graphs;

/// <summary>What the registry sends the graphs app: the workflow's input and how long it may take.</summary>
public sealed record GraphRunRequest(GraphWorkflowInput Graph, double DeadlineSeconds);

/// <summary>
/// Schedules <c>PolicyGraphWorkflow</c> on this app's sidecar and waits for it within the deadline; past it the
/// instance is terminated and the caller gets the contract's 504. Used inside the graphs app, where the workflow is
/// registered (a workflow runs where its app is).
/// </summary>
public sealed class GraphWorkflowRuns(DaprWorkflowClient workflows)
{
    public async Task<GraphWorkflowOutput> RunAsync(GraphRunRequest request, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(request);
        var deadline = TimeSpan.FromSeconds(request.DeadlineSeconds);
        var id = "graph-" + Guid.NewGuid().ToString("N");
        await workflows.ScheduleNewWorkflowAsync(GraphWorkflows.WorkflowName, id, request.Graph);
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(deadline);
        WorkflowState state;
        try
        {
            state = await workflows.WaitForWorkflowCompletionAsync(id, getInputsAndOutputs: true, wait.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            await workflows.TerminateWorkflowAsync(id, null, CancellationToken.None);
            throw GraphFailures.DeadlineExceeded(deadline, request.Graph.FunctionIds);
        }
        return state.RuntimeStatus == WorkflowRuntimeStatus.Completed
            ? state.ReadOutputAs<GraphWorkflowOutput>() ?? throw Problems.BackendError($"graph workflow {id} completed without an output")
            : throw Problems.BackendError($"graph workflow {id} ended {state.RuntimeStatus}: {state.FailureDetails?.ErrorMessage}");
    }
}
