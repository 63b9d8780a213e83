using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;

namespace PolicyGrid.Dapr.Graphs;

/// <summary>What the registry sends the graphs app: the workflow's input and how long it may take.</summary>
public sealed record GraphRunRequest(GraphWorkflowInput Graph, double DeadlineSeconds)
{
    /// <summary>Far above the registry's own cap, and within what a cancellation timer can wait (about 49 days).</summary>
    public static readonly TimeSpan MaxDeadline = TimeSpan.FromDays(30);

    public TimeSpan Deadline => TimeSpan.FromSeconds(DeadlineSeconds);

    /// <summary>
    /// Reads a <c>POST /run_graph</c> body as the registry writes it (<see cref="Json.Options"/>, snake_case) and checks
    /// it before any workflow is scheduled: a 400 naming each bad field, instead of a workflow that fails on its sidecar.
    /// </summary>
    public static GraphRunRequest FromJson(JsonNode? body)
    {
        if (body is not JsonObject)
            throw Problems.BadRequest($"the run_graph body must be a JSON object with graph and deadline_seconds, not {Describe(body)}");
        GraphRunRequest request;
        try
        {
            request = body.Deserialize<GraphRunRequest>(Json.Options)!;
        }
        catch (JsonException e)
        {
            throw Problems.Validation(e.Path is { Length: > 2 } path ? path[2..] : "request body", "has the wrong JSON type");
        }

        var errors = new List<FieldError>();
        if (!(request.DeadlineSeconds > 0 && request.DeadlineSeconds <= MaxDeadline.TotalSeconds))
            errors.Add(new("deadline_seconds", $"must be a number of seconds above 0 and at most {MaxDeadline.TotalSeconds:0}"));
        if (request.Graph is null) errors.Add(new("graph", "is required"));
        else errors.AddRange(Check(request.Graph));
        if (errors.Count > 0) throw Problems.Validation(errors);
        return request;
    }

    private static IEnumerable<FieldError> Check(GraphWorkflowInput graph)
    {
        var shapeGiven = true;
        if (graph.FunctionIds is null) { shapeGiven = false; yield return new("graph.function_ids", "is required"); }
        else
        {
            // GraphPlan names empty ids itself, but a JSON null in the list would break it before it could.
            for (var i = 0; i < graph.FunctionIds.Count; i++)
                if (graph.FunctionIds[i] is null) { shapeGiven = false; yield return new($"graph.function_ids[{i}]", "must be a function id, not null"); }
        }
        if (graph.Connections is null) { shapeGiven = false; yield return new("graph.connections", "is required (an empty object when no node has children)"); }
        else
        {
            foreach (var (node, children) in graph.Connections)
                for (var i = 0; i < (children?.Count ?? 0); i++)
                    if (string.IsNullOrEmpty(children![i])) { shapeGiven = false; yield return new($"graph.connections.{node}[{i}]", "must be a function id"); }
        }
        if (shapeGiven)
            foreach (var error in PlanErrors(graph)) yield return error;

        if (graph.Replicas is null) yield return new("graph.replicas", "is required (an empty object means one replica each)");
        else
            foreach (var (node, count) in graph.Replicas.Where(r => r.Value < 1))
                yield return new($"graph.replicas.{node}", $"must be at least 1, not {count}");

        if (graph.Executors is not null)
            foreach (var (node, uri) in graph.Executors)
            {
                if (graph.FunctionIds?.Contains(node) == false) yield return new($"graph.executors.{node}", "names no node of graph.function_ids");
                else if (!DaprGraphRunner.IsExecutorNode(uri)) yield return new($"graph.executors.{node}", $"must be an absolute http(s) executor node address, not '{uri}'");
            }

        if (graph.InputJson is null) yield return new("graph.input_json", "is required (the graph's input as JSON text)");
        else if (!IsJson(graph.InputJson)) yield return new("graph.input_json", "is not valid JSON text");

        // It names the workflow instance (GraphWorkflowRuns.InstanceId), whose ids the engine limits to these characters.
        if (graph.ExecutionId is { Length: > 0 } execution && !IsInstanceIdPart(execution))
            yield return new("graph.execution_id", $"must be at most {MaxExecutionIdLength} letters, digits, '-' or '_', not '{Shown(execution)}'");

        if (graph.MaxParallelism < 1) yield return new("graph.max_parallelism", $"must be at least 1, not {graph.MaxParallelism}");
        if (graph.RetryMaxAttempts < 1) yield return new("graph.retry_max_attempts", $"must be at least 1, not {graph.RetryMaxAttempts}");
        if (!(graph.RetryBackoffSeconds >= 0 && graph.RetryBackoffSeconds <= MaxDeadline.TotalSeconds))
            yield return new("graph.retry_backoff_seconds", $"must be a number of seconds from 0 to {MaxDeadline.TotalSeconds:0}");
    }

    // The workflow builds the same plan first thing; a shape it would reject is refused here, in this body's field names.
    private static IReadOnlyList<FieldError> PlanErrors(GraphWorkflowInput graph)
    {
        try
        {
            GraphPlan.Build(graph.FunctionIds, graph.Connections);
            return [];
        }
        catch (PolicyGridException e)
        {
            return [.. e.Errors.Select(f => new FieldError(InThisBody(f.Path), InThisBody(f.Message)))];
        }
    }

    private static string InThisBody(string text) =>
        text.Replace("graph_function_ids", "graph.function_ids", StringComparison.Ordinal)
            .Replace("graph_connection_data", "graph.connections", StringComparison.Ordinal);

    /// <summary>Longest execution id taken; the registry's are 32 hex digits.</summary>
    public const int MaxExecutionIdLength = 64;

    private static bool IsInstanceIdPart(string text) =>
        text.Length <= MaxExecutionIdLength && text.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    private static string Shown(string text) => text.Length <= MaxExecutionIdLength ? text : text[..MaxExecutionIdLength] + "...";

    private static bool IsJson(string text)
    {
        try
        {
            using var _ = JsonDocument.Parse(text);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonArray => "a JSON array",
        _ => $"a JSON {node.GetValueKind().ToString().ToLowerInvariant()}",
    };
}
