using Dapr.Workflow;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr.Graphs;

/// <summary>
/// Schedules <c>PolicyGraphWorkflow</c> on this app's sidecar and waits for it within the deadline; past it the
/// instance is terminated and the caller gets the contract's 504. Used inside the graphs app, where the workflow is
/// registered (a workflow runs where its app is).
/// </summary>
public sealed class GraphWorkflowRuns(IGraphWorkflowInstances workflows)
{
    public async Task<GraphWorkflowOutput> RunAsync(GraphRunRequest request, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(request);
        var id = "graph-" + Guid.NewGuid().ToString("N");
        await workflows.StartAsync(id, request.Graph, ct);
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(request.Deadline);
        GraphWorkflowEnd end;
        try
        {
            end = await workflows.WaitForEndAsync(id, wait.Token);
        }
        catch (OperationCanceledException) when (wait.IsCancellationRequested)
        {
            // Past the deadline or with the registry gone, nobody can read this run any more (its id is never handed
            // out), so it is stopped rather than left calling functions for no one.
            await workflows.TerminateAsync(id, CancellationToken.None);
            if (ct.IsCancellationRequested) throw;
            throw GraphFailures.DeadlineExceeded(request.Deadline, request.Graph.FunctionIds);
        }
        // A node's failure is a completed run whose output names the node; a run that did not complete is the engine's.
        return end.Status == WorkflowRuntimeStatus.Completed
            ? end.Output ?? throw Problems.BackendError($"graph workflow {id} completed without an output")
            : throw Problems.BackendError($"graph workflow {id} ended {end.Status}: {end.FailureMessage}");
    }
}
