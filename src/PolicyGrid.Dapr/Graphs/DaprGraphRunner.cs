using System.Text.Json.Nodes;
using System.Net.Http.Json;
using PolicyGrid.Dapr.Invocation;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr.Graphs;

/// <summary>
/// The registry's graph runner in the Dapr shape: sends the plan's graph to the graphs app (service invocation,
/// method <see cref="RunMethod"/>), which runs <c>PolicyGraphWorkflow</c> durably and answers when it completes or
/// its deadline passes. Node failures come back named, as the embedded runner reports them.
/// </summary>
public sealed class DaprGraphRunner(IHttpClientFactory clients, IDocumentStore store) : IGraphRunner
{
    public const string RunMethod = "run_graph";

    /// <summary>
    /// How long past the run's deadline the registry still waits for the graphs app, which answers 504 itself at the
    /// deadline: room for the hops through two sidecars. Past it the run is the same 504 without that answer.
    /// </summary>
    public TimeSpan Grace { get; init; } = TimeSpan.FromSeconds(30);

    public async Task<GraphRunResult> RunAsync(GraphPlan plan, JsonNode? input, GraphRunOptions options, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(options);
        var replicas = new Dictionary<string, int>(StringComparer.Ordinal);
        var executors = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var node in plan.Nodes)
        {
            var stored = await store.GetAsync(Collections.Functions, node, ct);
            if (stored is null)
            {
                replicas[node] = 1;
                continue;
            }
            var function = FunctionDeployment.FromJson(stored.Body);
            replicas[node] = Math.Max(1, function.Replicas);
            // A function on an http(s) executor node runs there, not as an actor: the workflow calls that node as the
            // registry's own calls of it do, or the node answered "function 'x' is not deployed" from the functions app.
            if (IsExecutorNode(function.FunctionExecutorUri)) executors[node] = function.FunctionExecutorUri;
        }
        var request = new GraphRunRequest(ToWorkflowInput(plan, input, options, replicas, executors), options.Deadline.TotalSeconds);
        // Service invocation through the sidecar (the same client the dapr:// executor transport uses).
        // The client has no timeout of its own: this call waits as long as the run may take (up to an hour), no longer.
        var http = clients.CreateClient(DaprExecutorTransport.HttpClientName);
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
        bounded.CancelAfter(options.Deadline + Grace);
        HttpResponseMessage response;
        try
        {
            response = await http.PostAsJsonAsync($"v1.0/invoke/{GraphWorkflows.AppId}/method/{RunMethod}", request, Json.Options, bounded.Token);
        }
        catch (HttpRequestException e)
        {
            throw Problems.BackendUnavailable($"the Dapr sidecar could not reach the graphs app ({GraphWorkflows.AppId}): {e.Message}", e);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // Neither the graphs app nor its sidecar answered by the deadline (and its grace): the run's 504.
            throw GraphFailures.DeadlineExceeded(options.Deadline, plan.Nodes);
        }
        using (response)
        {
            if (response.StatusCode == System.Net.HttpStatusCode.GatewayTimeout)
                throw GraphFailures.DeadlineExceeded(options.Deadline, plan.Nodes);
            if (!response.IsSuccessStatusCode)
                throw Problems.BackendError($"the graphs app ({GraphWorkflows.AppId}) answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(ct)}");
            GraphWorkflowOutput? output;
            try
            {
                output = await response.Content.ReadFromJsonAsync<GraphWorkflowOutput>(Json.Options, ct);
            }
            catch (System.Text.Json.JsonException e)
            {
                // The graphs app's answer, not the caller's body: a backend error, not a 400.
                throw Problems.BackendError($"the graphs app ({GraphWorkflows.AppId}) answered something that is not a graph output: {e.Message}");
            }
            if (output is null) throw Problems.BackendError($"the graphs app ({GraphWorkflows.AppId}) answered no graph output");
            return ToResult(output);
        }
    }

    public static GraphWorkflowInput ToWorkflowInput(GraphPlan plan, JsonNode? input, GraphRunOptions options, IReadOnlyDictionary<string, int> replicas,
        IReadOnlyDictionary<string, string>? executors = null) =>
        new([.. plan.Nodes],
            plan.Nodes.ToDictionary(n => n, n => plan.Children(n), StringComparer.Ordinal),
            replicas,
            input?.ToJsonString() ?? "null",
            options.MaxParallelism,
            options.NodeRetry.MaxAttempts,
            options.NodeRetry.Backoff.TotalSeconds,
            options.Trace,
            executors is { Count: > 0 } ? executors : null,
            options.Origin?.Caller ?? "",
            options.Origin?.GraphId ?? "",
            options.Origin?.ExecutionId ?? "");

    /// <summary>Whether an executor address is an executor node reached over HTTP (its functions are not actors).</summary>
    public static bool IsExecutorNode(string? executorHostUri) =>
        Uri.TryCreate(executorHostUri, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https";

    /// <summary>The workflow's output as the runner port answers it: the result and trace, or the failing node's error.</summary>
    public static GraphRunResult ToResult(GraphWorkflowOutput output)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (!output.Ok)
        {
            var error = output.Error ?? new GraphNodeError("?", 502, ErrorCodes.BackendError, "the graph workflow failed without naming a node");
            throw GraphFailures.NodeFailed(error.Node, error.Status, error.Code, error.Message);
        }
        return new GraphRunResult(JsonNode.Parse(output.ResultJson),
            [.. output.Trace.Select(t => new GraphNodeTrace(t.Node, JsonNode.Parse(t.InputJson), t.OutputJson.Length > 0 ? JsonNode.Parse(t.OutputJson) : null, t.StartedAt, t.DurationMs))]);
    }
}
