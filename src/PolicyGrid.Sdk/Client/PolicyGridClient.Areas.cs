using System.Net.Http.Headers;
using System.Text.Json.Nodes;

namespace PolicyGrid.Sdk.Client;

// One method per contract endpoint, grouped by area. Paths and bodies follow contract/API.md.
public sealed partial class PolicyGridClient
{
    // ---------------------------------------------------------------- policies
    public Task<JsonObject> CreatePolicyAsync(JsonObject document, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Post, "/policy", document, ct);

    public Task<JsonObject> GetPolicyAsync(string policyRuleUri, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Get, $"/policy/{Segment(policyRuleUri)}", null, ct);

    /// <summary>The document with its revision (ETag), for callers that cache it.</summary>
    public async Task<PolicyRevision> GetPolicyRevisionAsync(string policyRuleUri, CancellationToken ct = default)
    {
        var (document, response) = await DocumentAsync($"/policy/{Segment(policyRuleUri)}", ct);
        return new PolicyRevision(document, response.ETag, response.Deprecated);
    }

    /// <summary>A Mongo-style update (<c>$set</c>, <c>$unset</c>, <c>$push</c>, <c>$inc</c>) or a full document; <paramref name="ifMatch"/> guards the revision.</summary>
    public Task<JsonObject> UpdatePolicyAsync(string policyRuleUri, JsonObject update, string? ifMatch = null, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Put, $"/policy/{Segment(policyRuleUri)}", update, ct,
            IfMatch(ifMatch));

    /// <summary>Deletes the policy; <paramref name="ifMatch"/> (an ETag a read answered) guards the revision: another revision answers 409 <c>conflict</c>.</summary>
    public Task<JsonObject> DeletePolicyAsync(string policyRuleUri, bool force = false, string? ifMatch = null, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Delete, $"/policy/{Segment(policyRuleUri)}" + (force ? "?force=true" : ""), null, ct, IfMatch(ifMatch));

    /// <summary>The signature before <c>ifMatch</c>: callers passing a token by position keep compiling.</summary>
    public Task<JsonObject> DeletePolicyAsync(string policyRuleUri, bool force, CancellationToken ct) => DeletePolicyAsync(policyRuleUri, force, null, ct);

    public Task<JsonArray> QueryPoliciesAsync(JsonObject? filter = null, QueryOptions? paging = null, CancellationToken ct = default) =>
        ArrayAsync("/policy/query", filter, paging, ct);

    // ---------------------------------------------------------------- executors (Type 2)
    public Task<JsonObject> CreateExecutorAsync(JsonObject document, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Post, "/executor", document, ct);

    public Task<JsonObject> GetExecutorAsync(string executorId, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Get, $"/executor/{Segment(executorId)}", null, ct);

    /// <summary>The executor document with its revision (ETag), to pass as <c>ifMatch</c> to an update or delete.</summary>
    public Task<DocumentRevision> GetExecutorRevisionAsync(string executorId, CancellationToken ct = default) =>
        RevisionAsync($"/executor/{Segment(executorId)}", ct);

    /// <summary>A Mongo-style update or a full document; <paramref name="ifMatch"/> guards the revision: another revision answers 409 <c>conflict</c>.</summary>
    public Task<JsonObject> UpdateExecutorAsync(string executorId, JsonObject update, string? ifMatch = null, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Put, $"/executor/{Segment(executorId)}", update, ct, IfMatch(ifMatch));

    /// <summary>The signature before <c>ifMatch</c>: callers passing a token by position keep compiling.</summary>
    public Task<JsonObject> UpdateExecutorAsync(string executorId, JsonObject update, CancellationToken ct) => UpdateExecutorAsync(executorId, update, null, ct);

    public Task<JsonObject> DeleteExecutorAsync(string executorId, string? ifMatch = null, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Delete, $"/executor/{Segment(executorId)}", null, ct, IfMatch(ifMatch));

    /// <summary>The signature before <c>ifMatch</c>: callers passing a token by position keep compiling.</summary>
    public Task<JsonObject> DeleteExecutorAsync(string executorId, CancellationToken ct) => DeleteExecutorAsync(executorId, null, ct);

    public Task<JsonArray> QueryExecutorsAsync(JsonObject? filter = null, QueryOptions? paging = null, CancellationToken ct = default) =>
        ArrayAsync("/executor/query", filter, paging, ct);

    /// <summary>Runs a policy once on an executor; answers exactly what the policy's <c>eval</c> returned.</summary>
    public async Task<JsonNode?> ExecutePolicyAsync(string executorId, ExecutePolicyRequest request, CancellationToken ct = default) =>
        (await ExecutePolicyResponseAsync(executorId, request, ct)).Data;

    /// <summary><see cref="ExecutePolicyAsync"/> with the answer's headers (a deprecated policy's <c>Deprecation</c>).</summary>
    internal Task<PolicyGridResponse> ExecutePolicyResponseAsync(string executorId, ExecutePolicyRequest request, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(request);
        // The server lets the policy run TimeoutSeconds: the client waits that long (and the server's margin) on top of Timeout.
        return EnvelopedAsync(HttpMethod.Post, $"/executor/{Segment(executorId)}/execute_policy", request.ToJson(), ct, held: ServerTime(request.TimeoutSeconds));
    }

    /// <summary>Runs <c>management(action, data)</c> on a fresh instance on the executor.</summary>
    public async Task<JsonNode?> ManagementAsync(string executorId, ManagementRequest request, CancellationToken ct = default) =>
        (await ManagementResponseAsync(executorId, request, ct)).Data;

    /// <summary><see cref="ManagementAsync"/> with the answer's headers (a deprecated policy's <c>Deprecation</c>).</summary>
    internal Task<PolicyGridResponse> ManagementResponseAsync(string executorId, ManagementRequest request, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(request);
        return EnvelopedAsync(HttpMethod.Post, $"/executor/{Segment(executorId)}/management", request.ToJson(), ct, held: ServerTime(request.TimeoutSeconds));
    }

    public Task<JsonNode?> CreateInfraAsync(string executorId, JsonObject clusterConfig, CancellationToken ct = default) =>
        DataAsync(HttpMethod.Post, $"/executor/{Segment(executorId)}/create-infra", new JsonObject { ["cluster_config"] = clusterConfig.DeepClone() }, ct);

    public Task<JsonNode?> RemoveInfraAsync(string executorId, JsonObject clusterConfig, CancellationToken ct = default) =>
        DataAsync(HttpMethod.Delete, $"/executor/{Segment(executorId)}/remove-infra", new JsonObject { ["cluster_config"] = clusterConfig.DeepClone() }, ct);

    // ---------------------------------------------------------------- bundles
    /// <summary>Stores an archive (.zip, .tar.xz, .tar.gz) content-addressed; answers its <c>code</c>, <c>sha256</c>, <c>size</c> and <c>url</c>.</summary>
    public async Task<BundleUpload> UploadBundleAsync(byte[] archive, string contentType = "application/zip", CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(archive);
        using var content = new ByteArrayContent(archive);
        content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        var data = (await SendContentAsync(HttpMethod.Post, "/bundles", content, null, ct)).Data as JsonObject
            ?? throw new PolicyGridApiException(502, "backend_error", "POST /bundles did not answer an object");
        return new BundleUpload(
            data["code"]?.GetValue<string>() ?? "",
            data["sha256"]?.GetValue<string>() ?? "",
            data["size"]?.GetValue<long>() ?? archive.LongLength,
            data["url"]?.GetValue<string>() ?? "");
    }

    /// <summary>Downloads an archive by its sha256 (from this server) or by an absolute URL.</summary>
    public async Task<byte[]> DownloadBundleAsync(string sha256OrUrl, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sha256OrUrl);
        var path = sha256OrUrl.Contains('/', StringComparison.Ordinal) ? sha256OrUrl : $"/bundles/sha256/{sha256OrUrl}";
        var response = await SendContentAsync(HttpMethod.Get, path, null, null, ct);
        if (response.Data is not null) throw new PolicyGridApiException(502, "backend_error", $"{path} answered JSON where an archive was expected");
        return response.Body;
    }

    // ---------------------------------------------------------------- decisions
    public Task<JsonArray> QueryDecisionsAsync(JsonObject? filter = null, QueryOptions? paging = null, CancellationToken ct = default) =>
        ArrayAsync("/decisions/query", filter, paging, ct);

    // ---------------------------------------------------------------- jobs (Type 3)
    /// <summary>Submits a job; an empty <paramref name="executorId"/> lets the server's allocation rule choose.</summary>
    public Task<JsonObject> SubmitJobAsync(JsonObject body, string? executorId = null, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Post, string.IsNullOrEmpty(executorId) ? "/jobs/submit" : $"/jobs/submit/{Segment(executorId)}", body, ct);

    /// <summary>
    /// A job's record; with <paramref name="wait"/> the server long-polls until it ends (or that long passes, at most its
    /// own limit), and the client waits that long on top of its <see cref="Timeout"/>.
    /// </summary>
    public async Task<JsonObject> GetJobAsync(string jobId, TimeSpan? wait = null, CancellationToken ct = default)
    {
        var path = $"/jobs/{Segment(jobId)}" + (wait is { } w ? $"?wait={(int)Math.Ceiling(w.TotalSeconds)}" : "");
        // Held to Timeout alone, every wait longer than it failed as "no answer" while the job ran on.
        var data = (await SendContentAsync(HttpMethod.Get, path, null, null, ct, wait ?? TimeSpan.Zero)).Data;
        return data as JsonObject ?? throw new PolicyGridApiException(502, "backend_error", $"GET {path} answered {data?.GetValueKind().ToString() ?? "null"} where a document was expected");
    }

    public Task<JsonObject> CancelJobAsync(string jobId, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Delete, $"/jobs/{Segment(jobId)}", null, ct);

    public Task<JsonArray> QueryJobsAsync(JsonObject? filter = null, QueryOptions? paging = null, CancellationToken ct = default) =>
        ArrayAsync("/jobs/query", filter, paging, ct);

    // ---------------------------------------------------------------- functions (Type 4)
    public Task<JsonObject> DeployFunctionAsync(JsonObject body, string? executorId = null, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Post, $"/function/deployments/create/{Segment(executorId ?? "")}", body, ct);

    /// <summary>Removes a deployed function; <paramref name="ifMatch"/> is the ETag <c>GET /function/{id}</c> answered.</summary>
    public Task<JsonNode?> RemoveFunctionAsync(string name, string? ifMatch = null, CancellationToken ct = default) =>
        DataAsync(HttpMethod.Delete, $"/function/deployments/remove/{Segment(name)}", null, ct, IfMatch(ifMatch));

    /// <summary>The signature before <c>ifMatch</c>: callers passing a token by position keep compiling.</summary>
    public Task<JsonNode?> RemoveFunctionAsync(string name, CancellationToken ct) => RemoveFunctionAsync(name, null, ct);

    public Task<JsonNode?> CallFunctionAsync(string name, JsonNode? inputData, CancellationToken ct = default) =>
        DataAsync(HttpMethod.Post, $"/function/call_function/{Segment(name)}", inputData?.DeepClone() ?? new JsonObject(), ct);

    public Task<JsonNode?> FunctionManagementAsync(string name, string action, JsonNode? data = null, CancellationToken ct = default) =>
        DataAsync(HttpMethod.Post, $"/function/{Segment(name)}/management", new JsonObject { ["action"] = action, ["data"] = data?.DeepClone() ?? new JsonObject() }, ct);

    public Task<JsonObject> GetFunctionAsync(string functionId, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Get, $"/function/{Segment(functionId)}", null, ct);

    public Task<JsonArray> QueryFunctionsAsync(JsonObject? filter = null, QueryOptions? paging = null, CancellationToken ct = default) =>
        ArrayAsync("/function/query", filter, paging, ct);

    // ---------------------------------------------------------------- graphs (Type 5)
    public Task<JsonObject> CreateGraphAsync(JsonObject document, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Post, "/graphs", document, ct);

    public Task<JsonObject> GetGraphAsync(string graphUri, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Get, $"/graphs/{Segment(graphUri)}", null, ct);

    /// <summary>The graph document with its revision (ETag), to pass as <c>ifMatch</c> to an update or delete.</summary>
    public Task<DocumentRevision> GetGraphRevisionAsync(string graphUri, CancellationToken ct = default) =>
        RevisionAsync($"/graphs/{Segment(graphUri)}", ct);

    /// <summary>A Mongo-style update or a full document; <paramref name="ifMatch"/> guards the revision: another revision answers 409 <c>conflict</c>.</summary>
    public Task<JsonObject> UpdateGraphAsync(string graphUri, JsonObject update, string? ifMatch = null, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Put, $"/graphs/{Segment(graphUri)}", update, ct, IfMatch(ifMatch));

    /// <summary>The signature before <c>ifMatch</c>: callers passing a token by position keep compiling.</summary>
    public Task<JsonObject> UpdateGraphAsync(string graphUri, JsonObject update, CancellationToken ct) => UpdateGraphAsync(graphUri, update, null, ct);

    public Task<JsonObject> DeleteGraphAsync(string graphUri, string? ifMatch = null, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Delete, $"/graphs/{Segment(graphUri)}", null, ct, IfMatch(ifMatch));

    /// <summary>The signature before <c>ifMatch</c>: callers passing a token by position keep compiling.</summary>
    public Task<JsonObject> DeleteGraphAsync(string graphUri, CancellationToken ct) => DeleteGraphAsync(graphUri, null, ct);

    public Task<JsonArray> QueryGraphsAsync(JsonObject? filter = null, QueryOptions? paging = null, CancellationToken ct = default) =>
        ArrayAsync("/graphs/query", filter, paging, ct);

    /// <summary>Runs a graph; answers the sink's output, or <c>{result, trace}</c> / <c>{execution_id}</c> when asked.</summary>
    public Task<JsonNode?> ExecuteGraphAsync(string graphUri, JsonNode? inputData, bool trace = false, bool runAsync = false, CancellationToken ct = default) =>
        ExecuteGraphAsync(graphUri, inputData, null, trace, runAsync, ct);

    /// <summary>Runs a graph with a deadline for the whole run (<c>timeout_seconds</c>), waited for on top of <see cref="Timeout"/>.</summary>
    public Task<JsonNode?> ExecuteGraphAsync(string graphUri, JsonNode? inputData, double? timeoutSeconds, bool trace = false, bool runAsync = false, CancellationToken ct = default)
    {
        var body = new JsonObject { ["graph_uri"] = graphUri, ["input_data"] = inputData?.DeepClone() };
        if (trace) body["trace"] = true;
        if (runAsync) body["async"] = true;
        if (timeoutSeconds is { } t) body["timeout_seconds"] = t;
        return DataAsync(HttpMethod.Post, "/graph/execute_graph", body, ct, held: runAsync ? TimeSpan.Zero : ServerTime(timeoutSeconds));
    }

    public Task<JsonObject> GetGraphExecutionAsync(string executionId, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Get, $"/graph/executions/{Segment(executionId)}", null, ct);

    /// <summary>Cancels a running async graph run and answers its record (one that already ended, unchanged).</summary>
    public Task<JsonObject> CancelGraphExecutionAsync(string executionId, CancellationToken ct = default) =>
        ObjectAsync(HttpMethod.Delete, $"/graph/executions/{Segment(executionId)}", null, ct);

    /// <summary>The graph as a Mermaid diagram (<c>text/vnd.mermaid</c>).</summary>
    public async Task<string> GetGraphDiagramAsync(string graphUri, CancellationToken ct = default)
    {
        var response = await SendContentAsync(HttpMethod.Get, $"/graphs/{Segment(graphUri)}/diagram", null, null, ct);
        return System.Text.Encoding.UTF8.GetString(response.Body);
    }
}
