namespace PolicyGrid.Api.Graphs;

/// <summary>Limits of graph runs (configuration section <c>PolicyGrid:Graphs</c>); a graph's metadata may tighten them.</summary>
public sealed class GraphExecutionOptions
{
    public const string Section = "PolicyGrid:Graphs";

    /// <summary>Deadline of a whole graph run unless <c>graph_metadata.deadline_seconds</c> or the call's <c>timeout_seconds</c> says otherwise.</summary>
    public double DefaultDeadlineSeconds { get; set; } = 60;

    /// <summary>No run may ask for more than this.</summary>
    public double MaxDeadlineSeconds { get; set; } = 3600;

    /// <summary>Nodes of one run that may be running at once.</summary>
    public int MaxParallelism { get; set; } = 16;
}
