using System.Text.Json.Nodes;
using Dapr.Workflow;
using PolicyGrid.Core.Graphs;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Workflows.Activities;

namespace PolicyGrid.Workflows;

/// <summary>
/// Runs a Type 5 graph durably: builds Core's <see cref="GraphPlan"/> (the same plan the embedded runner walks),
/// fans each level out as <see cref="CallFunctionActivity"/> calls with bounded parallelism, and fans in at joins
/// by handing a node its parents' outputs in graph_function_ids order. The first failing level stops the graph.
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

        foreach (var level in plan.Levels)
        {
            var calls = level.Select(node => new NodeCallRequest(
                node, graph.Replicas.GetValueOrDefault(node, 1), InputOf(plan.Parents(node), input, outputs)?.ToJsonString() ?? "null",
                graph.Executors?.GetValueOrDefault(node), caller, graph.GraphId ?? "", execution)).ToList();
            var results = await context.ProcessInParallelAsync(calls, call => CallWithRetryAsync(context, graph, call), Math.Max(1, graph.MaxParallelism));

            foreach (var (call, result) in calls.Zip(results))
            {
                if (graph.Trace)
                    trace.Add(new GraphTraceEntry(call.Node, call.InputJson, result.OutputJson, result.StartedAt, result.DurationMs));
                if (!result.Ok)
                    return GraphWorkflowOutput.Failed(new GraphNodeError(call.Node, result.Status, result.Code, result.Message), trace);
                outputs[call.Node] = JsonNode.Parse(result.OutputJson);
            }
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

    private static async Task<NodeCallResult> CallWithRetryAsync(WorkflowContext context, GraphWorkflowInput graph, NodeCallRequest call)
    {
        for (var attempt = 1; ; attempt++)
        {
            var result = await context.CallActivityAsync<NodeCallResult>(GraphWorkflows.CallNodeActivity, call);
            if (result.Ok || attempt >= graph.RetryMaxAttempts || !NodeRetries.Retried(result.Status))
                return result;
            if (graph.RetryBackoffSeconds > 0)
                await context.CreateTimer(TimeSpan.FromSeconds(graph.RetryBackoffSeconds));
        }
    }
}

/// <summary>Which failures a node retry policy tries again: the policy's own failures and unavailable backends, never a caller's mistake.</summary>
public static class NodeRetries
{
    public static bool Retried(int status) => status is 422 or 429 or 502 or 503 or 504;
}
