using System.Text.Json.Nodes;
using Dapr.Workflow;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Workflows.Activities;

namespace PolicyGrid.Workflows;

/// <summary>
/// Runs a Type 5 graph durably: builds Core's <see cref="GraphPlan"/> (the same plan the embedded runner walks),
/// fans each level out as <see cref="CallFunctionActivity"/> calls with bounded parallelism, and fans in at joins
/// by handing a node its parents' outputs in graph_function_ids order. The first node to fail for good stops the graph.
/// Workflow code must replay deterministically, so time comes from the context and retries wait on its timers.
/// </summary>
public sealed class PolicyGraphWorkflow : Workflow<GraphWorkflowInput, GraphWorkflowOutput>
{
    public override async Task<GraphWorkflowOutput> RunAsync(WorkflowContext context, GraphWorkflowInput graph)
    {
        var plan = GraphPlan.Build(graph.FunctionIds, graph.Connections);
        var input = JsonNode.Parse(graph.InputJson);
        var outputs = new Dictionary<string, JsonNode?>();
        var trace = new List<GraphTraceEntry>();
        // Who each node's call is recorded for: as the registry said, else (a run scheduled by a sender that does not say)
        // the run itself, so the record still names what started it.
        var execution = graph.ExecutionId is { Length: > 0 } id ? id : context.InstanceId;
        var caller = graph.Caller is { Length: > 0 } who ? who : $"graph:{execution}";
        var failure = new FirstFailure();
        // From the instance's start as its history has it, so the same on every replay; none for a run scheduled without one.
        var deadline = graph.DeadlineSeconds > 0 ? context.CurrentUtcDateTime.AddSeconds(graph.DeadlineSeconds) : DateTime.MaxValue;

        foreach (var level in plan.Levels)
        {
            var calls = level.Select(node => new NodeCallRequest(
                node, graph.Replicas.GetValueOrDefault(node, 1), InputOf(plan.Parents(node), input, outputs)?.ToJsonString() ?? "null",
                graph.Executors?.GetValueOrDefault(node), caller, graph.GraphId ?? "", execution)).ToList();
            var results = await context.ProcessInParallelAsync(calls, call => CallWithRetryAsync(context, graph, call, failure, deadline), Math.Max(1, graph.MaxParallelism));

            foreach (var (call, run) in calls.Zip(results))
            {
                if (run.Last is not { } result) continue; // never started: the run had failed or passed its deadline
                if (graph.Trace)
                    trace.Add(new GraphTraceEntry(call.Node, call.InputJson, result.OutputJson, result.StartedAt, result.DurationMs));
                if (result.Ok) outputs[call.Node] = JsonNode.Parse(result.OutputJson);
            }
            if (failure.Error is { } error)
                return GraphWorkflowOutput.Failed(error, trace);
        }

        return GraphWorkflowOutput.Succeeded(outputs[plan.Sink]?.ToJsonString() ?? "null", trace);
    }

    /// <summary>A root gets the graph's input, a node with one parent its output, a join the list of its parents' outputs.</summary>
    private static JsonNode? InputOf(IReadOnlyList<string> parents, JsonNode? input, Dictionary<string, JsonNode?> outputs) => parents.Count switch
    {
        0 => input?.DeepClone(),
        1 => outputs[parents[0]]?.DeepClone(),
        _ => new JsonArray([.. parents.Select(p => outputs[p]?.DeepClone())]),
    };

    /// <summary>
    /// One node's call, tried again as the graph's retry policy says. A node that fails for good stops the others, as the
    /// embedded runner cancels them: none starts (null) or is tried again (its last attempt) after it. A sibling used to
    /// be retried backoff after backoff, past the run's deadline, while the failure that ends the run waited. Past the
    /// deadline no node starts or is tried again either: the graphs app has answered 504 and terminates the instance, but
    /// one whose wait was cut short (the app restarted) is terminated by nobody.
    /// </summary>
    private static async Task<NodeRun> CallWithRetryAsync(WorkflowContext context, GraphWorkflowInput graph, NodeCallRequest call,
        FirstFailure failure, DateTime deadline)
    {
        NodeCallResult? last = null;
        for (var attempt = 1; ; attempt++)
        {
            if (failure.Error is not null) return new(last);
            if (context.CurrentUtcDateTime >= deadline)
            {
                failure.Keep(new GraphNodeError(call.Node, 504, ErrorCodes.PolicyTimeout,
                    $"the run's deadline of {graph.DeadlineSeconds:0.#######}s passed before this node {(last is null ? "started" : "could be tried again")}"));
                return new(last);
            }
            last = await context.CallActivityAsync<NodeCallResult>(GraphWorkflows.CallNodeActivity, call);
            if (last.Ok) return new(last);
            if (attempt >= graph.RetryMaxAttempts || !NodeRetries.Retried(last.Status))
            {
                failure.Keep(new GraphNodeError(call.Node, last.Status, last.Code, last.Message));
                return new(last);
            }
            if (graph.RetryBackoffSeconds > 0)
                await context.CreateTimer(TimeSpan.FromSeconds(graph.RetryBackoffSeconds));
        }
    }

    /// <summary>
    /// A node's last attempt, null when it never started. Always a new object: ProcessInParallelAsync tells its tasks
    /// apart by the task, and every async method that returns null at once hands back one and the same cached task: two
    /// nodes that did not start would fail the whole level on a duplicate key.
    /// </summary>
    private sealed record NodeRun(NodeCallResult? Last);

    /// <summary>
    /// The run's first node to fail for good. The orchestrator runs its continuations one at a time, in the order its
    /// history replays them, so the same node is first on every replay.
    /// </summary>
    private sealed class FirstFailure
    {
        private GraphNodeError? _error;

        public GraphNodeError? Error => Volatile.Read(ref _error);

        public void Keep(GraphNodeError error) => Interlocked.CompareExchange(ref _error, error, null);
    }
}

/// <summary>Which failures a node retry policy tries again: the policy's own failures and unavailable backends, never a caller's mistake.</summary>
public static class NodeRetries
{
    public static bool Retried(int status) => status is 422 or 429 or 502 or 503 or 504;
}
