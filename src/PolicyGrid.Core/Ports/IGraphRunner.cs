using System.Text.Json.Nodes;
using PolicyGrid.Core.Graphs;

namespace PolicyGrid.Core.Ports;

/// <summary>How often a failing node is tried again before the graph fails (one attempt = no retry, the default).</summary>
public sealed record NodeRetryPolicy(int MaxAttempts, TimeSpan Backoff)
{
    public static readonly NodeRetryPolicy None = new(1, TimeSpan.Zero);
}

/// <summary>Limits of one graph run: the deadline for the whole graph, how many nodes may run at once, node retries, tracing.</summary>
public sealed record GraphRunOptions(TimeSpan Deadline, int MaxParallelism = GraphRunOptions.DefaultParallelism, NodeRetryPolicy? Retry = null, bool Trace = false)
{
    public const int DefaultParallelism = 16;
    public static readonly TimeSpan DefaultDeadline = TimeSpan.FromSeconds(60);

    public NodeRetryPolicy NodeRetry => Retry ?? NodeRetryPolicy.None;

    /// <summary>Who started the run and which run it is: each node's function call is recorded in the decision log with it.</summary>
    public FunctionCallOrigin? Origin { get; init; }
}

/// <summary>One node's run, for <c>"trace": true</c>.</summary>
public sealed record GraphNodeTrace(string Node, JsonNode? Input, JsonNode? Output, DateTimeOffset StartedAt, double DurationMs);

/// <summary>The sink's output, and each node's trace when asked for (in the order nodes finished).</summary>
public sealed record GraphRunResult(JsonNode? Result, IReadOnlyList<GraphNodeTrace> Trace);

/// <summary>
/// Runs a Type 5 graph along a Core <see cref="GraphPlan"/>: roots get the input, a node with one parent gets its
/// output, a join gets the list of its parents' outputs (graph_function_ids order), the sink's output is the result.
/// A failing node stops the graph with an error naming the node; past the deadline the run answers 504.
/// Embedded: an in-process runner; Dapr: the <c>PolicyGraphWorkflow</c>.
/// </summary>
public interface IGraphRunner
{
    Task<GraphRunResult> RunAsync(GraphPlan plan, JsonNode? input, GraphRunOptions options, CancellationToken ct = default);
}

/// <summary>The errors both runners answer, worded the same so the two shapes cannot disagree.</summary>
public static class GraphFailures
{
    /// <summary>
    /// A node failed: the node's own status and code, a message naming it, and the node as the error's path.
    /// <paramref name="cause"/> (the node's failure itself) is kept as the inner exception.
    /// </summary>
    public static Errors.PolicyGridException NodeFailed(string node, int status, string code, string message, Exception? cause = null)
    {
        var failure = new Errors.PolicyGridException(status, code, $"graph node '{node}' failed: {message}", [new Errors.FieldError(node, message)], cause);
        failure.Data[NodeKey] = node;
        return failure;
    }

    private const string NodeKey = "PolicyGrid.GraphNode";

    /// <summary>
    /// The node a run's failure is from, and that node's own message, when it is a <see cref="NodeFailed"/> (null for a
    /// deadline or anything else): what the registry tells of the node's executor.
    /// </summary>
    public static (string Node, string Message)? FailedNode(Errors.PolicyGridException failure) =>
        failure.Data[NodeKey] is string node ? (node, failure.Errors.FirstOrDefault(e => e.Path == node)?.Message ?? failure.Message) : null;

    public static Errors.PolicyGridException DeadlineExceeded(TimeSpan deadline, IEnumerable<string> unfinished) =>
        Errors.Problems.PolicyTimeout(
            $"graph ran past its deadline of {deadline.TotalSeconds:0.#######}s; unfinished nodes: {string.Join(", ", unfinished)}");
}
