using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Graphs;

/// <summary>
/// The runner of a composition that runs no graphs (an executor app): graph documents still work, executions answer
/// 503. Each shape replaces it with its own runner (embedded: in-process; Dapr registry: the workflow).
/// </summary>
public sealed class UnavailableGraphRunner : IGraphRunner
{
    public Task<GraphRunResult> RunAsync(GraphPlan plan, JsonNode? input, GraphRunOptions options, CancellationToken ct = default) =>
        throw Problems.BackendUnavailable("this server has no graph runner; execute graphs through the registry");
}
