using System.ComponentModel;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Api.Documents;
using PolicyGrid.Api.Auth;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Api.Node;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Functions;

/// <summary>
/// Type 4 functions: deploy a policy as a long-lived stateful function on an executor, call it by name, reach its
/// live instance with management actions, read, query and remove it. Also the executor node's deployment routes,
/// through which another registry runs functions on this server.
/// </summary>
public static class FunctionsApi
{
    public static IServiceCollection AddFunctionsApi(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<FunctionRegistry>();
        services.AddSingleton<IFunctionInvoker>(sp => sp.GetRequiredService<FunctionRegistry>());
        services.AddRemoteFunctionHosts();
        services.AddSingleton<IFunctionHostTransport>(sp => sp.GetRequiredService<RemoteFunctionHostTransport>());
        return services;
    }

    public static IEndpointRouteBuilder MapFunctionsApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/function").WithTags("Functions");
        api.MapPost("/deployments/create/{executorId}", Deploy)
            .WithName("DeployFunction").WithSummary("Deploy a policy as a stateful function on an executor")
            .WithDescription("Body: {name, policy_rule_uri, policy_rule_parameters, replicas, autoscaling, function_metadata, function_tags}. Answers the Function document.");
        api.MapPost("/deployments/create", DeployAnywhere)
            .WithName("DeployFunctionAllocated").WithSummary("Deploy a function on the executor the allocation rule picks")
            .WithDescription("Also answers with a trailing slash. The healthy executor with the most free vCPUs (executor_hardware_info.vcpus.count less the replicas already placed on it).");
        api.MapDelete("/deployments/remove/{name}", Remove)
            .WithName("RemoveFunction").WithSummary("Stop a function, free its instances and forget its state; answers the removed document")
            .WithDescription("Honours If-Match (the ETag GET /function/{function_id} answered).");
        api.MapPost("/call_function/{name}", Call)
            .WithName("CallFunction").WithSummary("Call a function: the body is the input data; answers what eval returned");
        api.MapPost("/{name}/management", Manage)
            .WithName("ManageFunction").WithSummary("Run management(action, data) on the function's live instance (each replica)");
        api.MapQueryIsPostOnly("GET /function/{function_id}");
        api.MapGet("/{functionId}", Get)
            .WithName("GetFunction").WithSummary("Read a Function document");
        api.MapPost("/query", Query)
            .WithName("QueryFunctions").WithSummary("Find functions with a Mongo-style filter")
            .WithDescription("Body: a filter; ?limit (default 100, max 1000), ?skip, ?sort=field:asc|desc.");

        var node = app.MapGroup("").WithTags("Executor node");
        node.MapPost("/deployments", NodeDeploy)
            .WithName("NodeDeployFunction").WithSummary("Executor node: run a function on this server")
            .WithDescription("Body: a Function document (function_id, function_policy_data, replicas, autoscaling), as a registry forwards it.");
        node.MapDelete("/deployments/{name}", NodeRemove).WithName("NodeRemoveFunction").WithSummary("Executor node: remove a function");
        node.MapPost("/call_function/{name}", NodeCall).WithName("NodeCallFunction").WithSummary("Executor node: call a function");
        node.MapPost("/deployments/{name}/management", NodeManage).WithName("NodeManageFunction").WithSummary("Executor node: management on a function");
        return app;
    }

    public static async Task<EnvelopeOk<JsonObject>> Deploy([Description("The executor to deploy on; empty lets the allocation rule pick")] string executorId,
        JsonBody body, FunctionRegistry functions, CancellationToken ct) =>
        Deployed(await functions.DeployAsync(executorId, body.RequireObject(), ct), body.RequireObject());

    public static async Task<EnvelopeOk<JsonObject>> DeployAnywhere(JsonBody body, FunctionRegistry functions, CancellationToken ct) =>
        Deployed(await functions.DeployAsync(null, body.RequireObject(), ct), body.RequireObject());

    private static EnvelopeOk<JsonObject> Deployed(StoredDocument stored, JsonObject body) =>
        Answer.Ok(FunctionDeployment.FromJson(stored.Body).ToRedactedJson(), FunctionDeploymentRequest.IgnoredFieldWarnings(body));

    /// <summary>
    /// Removes the function, and warns of the graphs that have it as a node: they stay stored (a function may be deployed
    /// again under that name), but every run of them answers 404 until it is, and the removal used to say nothing of it.
    /// </summary>
    public static async Task<EnvelopeOk<JsonObject>> Remove(string name, FunctionRegistry functions, IDocumentStore store, HttpContext http, CancellationToken ct)
    {
        // Looked up first: a store that fails the lookup fails the removal before anything changed, rather than after it
        // (a 503 for a removal that happened, which a retry would then answer 404).
        var graphs = await Policies.PolicyUsage.GraphsWithNodesAsync(store, [name], ct);
        var removed = await functions.RemoveAsync(name, ETags.IfMatch(http.Request), ct);
        IReadOnlyList<string> warnings = graphs.Count == 0
            ? []
            : [$"function '{removed.Id}' is a node of graph(s) {string.Join(", ", graphs)}: running {(graphs.Count > 1 ? "them" : "it")} answers 404 until a function named '{removed.Id}' is deployed again"];
        return Answer.Ok(FunctionDeployment.FromJson(removed.Body).ToRedactedJson(), warnings);
    }

    public static async Task<EnvelopeOk<JsonObject>> Call(string name, JsonBody body, FunctionRegistry functions, HttpContext http, CancellationToken ct) =>
        Deprecating(http, await functions.CallForAnswerAsync(name, body.Node, new FunctionCallOrigin(http.Caller().Name), ct));

    public static async Task<EnvelopeOk<JsonObject>> Manage(string name, JsonBody body, FunctionRegistry functions, HttpContext http, CancellationToken ct) =>
        Deprecating(http, await functions.ManageForAnswerAsync(name, body.RequireObject(), new FunctionCallOrigin(http.Caller().Name), ct));

    // A deprecated policy still runs; its functions' answers say so as Type 2's do (docs/api.md: reads and executions).
    private static EnvelopeOk<JsonObject> Deprecating(HttpContext http, PolicyResult result)
    {
        if (result.Deprecated) http.Response.Headers["Deprecation"] = "true";
        return Answer.Ok(result.Output);
    }

    public static async Task<EnvelopeOk<JsonObject>> Get(string functionId, FunctionRegistry functions, HttpContext http, CancellationToken ct)
    {
        var stored = await functions.GetAsync(functionId, ct);
        ETags.Set(http.Response, stored.Revision);
        return Read(stored);
    }

    public static async Task<EnvelopeOk<JsonArray>> Query(JsonBody body, QueryWindow window, FunctionRegistry functions, CancellationToken ct)
    {
        var filter = FilterParser.Parse(body.Node);
        var found = await functions.QueryAsync(window.Over(filter), ct);
        return Answer.Ok(new JsonArray([.. found.Select(f => (JsonNode)f)]));
    }

    public static async Task<EnvelopeOk<JsonObject>> NodeDeploy(JsonBody body, HttpContext http, CancellationToken ct)
    {
        var function = FunctionDeployment.FromJson(body.RequireObject());
        if (function.FunctionPolicyData.Count == 0) throw Problems.Validation("function_policy_data", "is required: the policy snapshot to run");
        CheckSnapshot(function);
        await LocalHost(http).DeployAsync(FunctionRegistry.SpecOf(function), ct);
        return Answer.Ok((function with { Status = FunctionStatus.Running }).ToRedactedJson());
    }

    /// <summary>
    /// A node runs what it is sent, so it checks what the registry checked before sending it: the snapshot is
    /// of a kind this runtime runs (the same 422 as <see cref="PolicyRule.EnsureRunnableKind"/>) and is the
    /// policy the deployment names.
    /// </summary>
    private static void CheckSnapshot(FunctionDeployment function)
    {
        var data = function.FunctionPolicyData;
        var type = data["type"] is JsonValue t && t.TryGetValue<string>(out var text) && text.Length > 0
            ? text : throw Problems.Validation("function_policy_data.type", $"is required: the policy's runtime kind ({PolicyRule.PythonClassV1})");
        var snapshotUri = data["policy_rule_uri"] is JsonValue u && u.TryGetValue<string>(out var uriText) ? uriText : null;
        new PolicyRule { PolicyRuleUri = snapshotUri ?? function.FunctionPolicyRuleUri, Type = type }.EnsureRunnableKind();
        if (snapshotUri is null) return;
        var same = PolicyUri.TryParse(snapshotUri, out var parsed, out _)
            ? parsed.ToString() == function.PolicyUri.ToString()
            : snapshotUri == function.FunctionPolicyRuleUri;
        if (!same)
            throw Problems.BadRequest($"function_policy_rule_uri '{function.FunctionPolicyRuleUri}' disagrees with function_policy_data.policy_rule_uri '{snapshotUri}'; the snapshot must be of the policy the deployment names");
    }

    public static async Task<EnvelopeOk<JsonObject>> NodeRemove(string name, HttpContext http, CancellationToken ct) =>
        await LocalHost(http).RemoveAsync(name, ct)
            ? Answer.Ok(new JsonObject { ["function_id"] = name, ["status"] = "removed" })
            : throw Problems.NotFound($"function '{name}' is not deployed on this node");

    public static async Task<EnvelopeOk<JsonObject>> NodeCall(string name, JsonBody body, HttpContext http, CancellationToken ct)
    {
        var input = body.Node ?? new JsonObject();
        var host = LocalHost(http);
        var budget = NodeApi.Budget(http);
        var inputSha = CanonicalJson.Sha256(input);
        return Answer.Ok(await OnceAsync(http, $"call_function/{name}", inputSha,
            run => NodeAuditedAsync(http, host, Decision.KindFunctionCall, name, inputSha, () => host.CallAsync(name, input, budget, run)), ct));
    }

    public static async Task<EnvelopeOk<JsonObject>> NodeManage(string name, JsonBody body, HttpContext http, CancellationToken ct)
    {
        var request = body.RequireObject();
        var action = request["action"] is JsonValue a && a.TryGetValue<string>(out var text) && text.Length > 0
            ? text : throw Problems.Validation("action", "is required and must be a non-empty string");
        var data = request["data"] as JsonObject ?? [];
        var host = LocalHost(http);
        var budget = NodeApi.Budget(http);
        return Answer.Ok(await OnceAsync(http, $"management/{name}", CanonicalJson.Sha256(request),
            run => NodeAuditedAsync(http, host, Decision.KindFunctionManagement, name, CanonicalJson.Sha256(JsonValue.Create(action), data),
                () => host.ManageAsync(name, action, (JsonObject)data.DeepClone(), budget, run)), ct));
    }

    /// <summary>
    /// A node's function call or management action in its own decision log, as its Type 2 calls are: the caller is the
    /// identity the registry presented (its node token's name), the policy and bundle those this node's host runs. The
    /// registry records the same call with the caller who asked it. A call the ledger answers again runs, and is recorded, once.
    /// </summary>
    private static Task<JsonObject> NodeAuditedAsync(HttpContext http, IFunctionHost host, string kind, string name, string inputSha, Func<Task<JsonObject>> run)
    {
        if (http.RequestServices.GetService<DecisionLog>() is not { } decisions) return run();
        var audit = new AuditTrail(kind, "", http.Caller(), "", inputSha) { FunctionId = name };
        return audit.RunAsync(decisions, async () =>
        {
            try
            {
                return await run();
            }
            finally
            {
                // After the run: a function restored on first use after a restart is known to the host only now.
                try
                {
                    if (await host.StatusAsync(name, CancellationToken.None) is { } status)
                        (audit.PolicyRuleUri, audit.BundleSha256) = (status.PolicyRuleUri, status.BundleSha256);
                }
                catch (PolicyGridException)
                {
                    // The record keeps the function's name; the call's own outcome matters more than this lookup.
                }
            }
        });
    }

    /// <summary>
    /// A function call or management action with an <c>X-PolicyGrid-Call-Id</c> runs at most once (NodeCallLedger), as the
    /// node's Type 2 calls do: a registry's retry after a lost connection gets the first run's answer, and a stateful
    /// call does not run twice. The run then no longer stops when its request goes: it is bounded by the instance's
    /// CallTimeout, and by the caller's budget (X-PolicyGrid-Timeout-Ms) while it waits for its turn.
    /// </summary>
    private static async Task<JsonObject> OnceAsync(HttpContext http, string kind, string bodyHash, Func<CancellationToken, Task<JsonObject>> run,
        CancellationToken ct)
    {
        var callId = NodeApi.CallId(http);
        if (callId is null || http.RequestServices.GetService<NodeCallLedger>() is not { } ledger) return await run(ct);
        var result = await ledger.RunOnceAsync(callId, kind, http.Caller(), bodyHash, async token => new PolicyResult(await run(token)), ct);
        return result.Output;
    }

    /// <summary>The function host of this server itself; a composition without one (a Dapr registry) is no function node.</summary>
    private static IFunctionHost LocalHost(HttpContext http) =>
        http.RequestServices.GetService<IFunctionHost>()
        ?? throw Problems.NotFound("this server hosts no functions itself; deploy through POST /function/deployments/create/{executor_id}");

    private static EnvelopeOk<JsonObject> Read(StoredDocument stored) => Answer.Ok(FunctionDeployment.FromJson(stored.Body).ToRedactedJson());
}
