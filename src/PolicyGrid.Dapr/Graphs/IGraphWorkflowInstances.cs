using Dapr.Workflow;

namespace PolicyGrid.Dapr.Graphs;

/// <summary>How a graph workflow instance ended: its status, its output when it completed, Dapr's failure message otherwise.</summary>
public sealed record GraphWorkflowEnd(WorkflowRuntimeStatus Status, GraphWorkflowOutput? Output, string? FailureMessage);

/// <summary>
/// The three things a graph run asks of the workflow engine: start an instance, wait for its end, stop it.
/// DaprWorkflowClient has no seam of its own; this one lets <see cref="GraphWorkflowRuns"/>' deadline and failure
/// handling be tested without a sidecar.
/// </summary>
public interface IGraphWorkflowInstances
{
    Task StartAsync(string instanceId, GraphWorkflowInput graph, CancellationToken ct);

    Task<GraphWorkflowEnd> WaitForEndAsync(string instanceId, CancellationToken ct);

    Task TerminateAsync(string instanceId, CancellationToken ct);
}
