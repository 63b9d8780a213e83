using Dapr.Workflow;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr.Graphs;

/// <summary>
/// Schedules <c>PolicyGraphWorkflow</c> on this app's sidecar and waits for it within the deadline; past it the
/// instance is terminated and the caller gets the contract's 504. Used inside the graphs app, where the workflow is
/// registered (a workflow runs where its app is). A sidecar that cannot be reached while starting or waiting is the
/// contract's 503 (502 for other errors it reports), never a 500.
/// </summary>
public sealed class GraphWorkflowRuns(IGraphWorkflowInstances workflows, ILogger<GraphWorkflowRuns>? logger = null)
{
    private readonly ILogger _logger = logger ?? NullLogger<GraphWorkflowRuns>.Instance;

    public async Task<GraphWorkflowOutput> RunAsync(GraphRunRequest request, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(request);
        var id = InstanceId(request.Graph);
        try
        {
            // The workflow keeps the deadline too: when this wait is cut short (the graphs app restarted mid-run), nobody
            // terminates the instance, and it used to go on calling functions for a caller long gone.
            await workflows.StartAsync(id, request.Graph with { DeadlineSeconds = request.DeadlineSeconds }, ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"starting graph workflow {id}");
        }
        _logger.LogInformation("graph execution {Execution} of {Graph} for {Caller}: workflow instance {Instance} scheduled",
            request.Graph.ExecutionId is { Length: > 0 } execution ? execution : "(none named)", request.Graph.GraphId, request.Graph.Caller, id);
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
            await TerminateAsync(id);
            if (ct.IsCancellationRequested) throw;
            throw GraphFailures.DeadlineExceeded(request.Deadline, request.Graph.FunctionIds);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            // The run may still be going: stop it, since this caller will never read it.
            await TerminateAsync(id);
            throw SidecarFailures.Translate(e, $"waiting for graph workflow {id}");
        }
        // A node's failure is a completed run whose output names the node; a run that did not complete is the engine's.
        return end.Status == WorkflowRuntimeStatus.Completed
            ? end.Output ?? throw Problems.BackendError($"graph workflow {id} completed without an output")
            : throw Problems.BackendError($"graph workflow {id} ended {end.Status}: {end.FailureMessage}");
    }

    /// <summary>
    /// <c>graph-&lt;execution id&gt;</c>, so that an operator looking at a workflow instance (<c>dapr workflow</c>, the
    /// actor store) finds the run's record, its decision log entries and the registry's log lines; it used to be a GUID of
    /// its own that nothing tied to the run. The registry makes a new execution id for every run, sync or async, and sends
    /// it once, so the id is never scheduled twice; were the same request delivered again, the engine refuses an id it has
    /// (a 502) rather than running every node a second time. A sender that names no execution id gets a fresh GUID.
    /// </summary>
    public static string InstanceId(GraphWorkflowInput graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        return "graph-" + (graph.ExecutionId is { Length: > 0 } execution ? execution : Guid.NewGuid().ToString("N"));
    }

    // Best effort: the caller's answer (504, 503, or its own cancellation) is what matters, so a failure to stop the
    // run is logged for the operator rather than put in its place.
    private async Task TerminateAsync(string id)
    {
        try
        {
            await workflows.TerminateAsync(id, CancellationToken.None);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e) || e is InvalidOperationException)
        {
            _logger.LogError(e, "could not terminate graph workflow {Instance}; it may keep running until it ends by itself", id);
        }
    }
}
