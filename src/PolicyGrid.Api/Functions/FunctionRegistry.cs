using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Api.Documents;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Api.Executors;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Core.Templates;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Transports;

namespace PolicyGrid.Api.Functions;

/// <summary>
/// The registry side of Type 4: turns a deployment request into a Function document and a running function on the
/// executor's host (found by the executor's URI scheme), and routes calls and management to that host by name.
/// Also the <see cref="IFunctionInvoker"/> graph runners call nodes through.
/// </summary>
public sealed class FunctionRegistry(
    IDocumentStore store,
    IEnumerable<IFunctionHostTransport> transports,
    PolicyCatalog policies,
    ExecutorOutages outages,
    TimeProvider clock,
    ILogger<FunctionRegistry> logger,
    DecisionLog? decisions = null) : IFunctionInvoker
{
    // Which host runs each function and the policy it was deployed from, so a call costs no document read. Filled on
    // deploy and first use, emptied on remove.
    private readonly ConcurrentDictionary<string, Hosted> _hosts = new(StringComparer.Ordinal);

    // BundleSha256: the code_sha256 of the function's policy snapshot, what its host runs (the decision log records it).
    private sealed record Hosted(IFunctionHost Host, string PolicyRuleUri, string ExecutorId, string BundleSha256);

    private static Hosted HostedOf(IFunctionHost host, FunctionDeployment function) =>
        new(host, function.FunctionPolicyRuleUri, function.FunctionExecutorId, PolicyRule.RecordedCodeSha256(function.FunctionPolicyData) ?? "");

    // What a function's callers get while its executor is down, as the log says it once.
    private const string WhileDown = "; calls and management of its functions answer 503 until it answers again";

    // Deploys and removes of one name run one at a time in this process: interleaved, a remove could delete the
    // document of a deployment still starting on its host, which then ran on, callable but unlisted and unremovable.
    private readonly KeyedLocks _names = new();

    public async Task<StoredDocument> DeployAsync(string? executorId, JsonObject body, CancellationToken ct)
    {
        var request = FunctionDeploymentRequest.Parse(body);
        if (!PolicyUri.TryParse(request.PolicyRuleUri, out var uri, out var uriError))
            throw Problems.Validation("policy_rule_uri", uriError);
        var stored = await store.GetAsync(Collections.Policies, uri.ToString(), ct)
            ?? throw Problems.UnknownPolicy(uri.ToString(), "create it before deploying it as a function (POST /policy, or `policygrid policy push <dir>`)");
        var policy = PolicyRule.FromJson(stored.Body);
        if (policy.IsRetired) throw Problems.Retired($"policy '{uri}' is retired and cannot be deployed");
        policy.EnsureRunnableKind();

        var executor = string.IsNullOrEmpty(executorId) ? await AllocateAsync(ct) : await ExecutorAsync(executorId, ct);
        if (executor.ExecutorStatus == ExecutorStatus.Draining)
            throw Problems.BackendUnavailable($"executor '{executor.ExecutorId}' is draining and takes no new functions");
        var host = HostFor(executor);

        // The snapshot: the policy as it is now, with the deployment's parameters merged over its own (given keys win).
        var parameters = (JsonObject)policy.PolicyParameters.DeepClone();
        foreach (var (key, value) in request.PolicyRuleParameters) parameters[key] = value?.DeepClone();
        var parameterErrors = TemplateValidator.Validate(policy.PolicyParametersSchema, parameters, "policy_rule_parameters");
        if (parameterErrors.Count > 0) throw Problems.Validation(parameterErrors);
        var snapshot = (policy with { PolicyParameters = parameters }).ToJson();

        var function = FunctionDeployment.FromJson(new JsonObject
        {
            ["function_id"] = request.Name,
            ["function_executor_id"] = executor.ExecutorId,
            ["function_executor_uri"] = executor.ExecutorHostUri,
            ["function_metadata"] = request.FunctionMetadata.DeepClone(),
            ["function_tags"] = new JsonArray([.. request.FunctionTags.Select(t => (JsonNode)t)]),
            ["function_policy_rule_uri"] = uri.ToString(),
            ["function_policy_data"] = snapshot,
            ["replicas"] = request.Replicas,
            ["autoscaling"] = request.Autoscaling.DeepClone(),
            ["status"] = FunctionStatus.Pending,
        }).WithTimestamps(null, clock.GetUtcNow());

        using var named = await _names.AcquireAsync(function.FunctionId, ct);
        // The document first (its create is the atomic duplicate check), then the host; a failed start leaves nothing.
        var pending = await store.CreateAsync(Collections.Functions, function.FunctionId, function.ToJson(), ct);
        try
        {
            await host.DeployAsync(SpecOf(function), ct);
        }
        catch
        {
            await store.DeleteAsync(Collections.Functions, function.FunctionId, null, CancellationToken.None);
            throw;
        }
        StoredDocument running;
        try
        {
            running = await store.ReplaceAsync(Collections.Functions, function.FunctionId,
                (function with { Status = FunctionStatus.Running }).ToJson(), pending.Revision, CancellationToken.None);
        }
        catch (PolicyGridException e) when (e.Status is 404 or 409)
        {
            // Removed (or replaced) meanwhile by another registry sharing the store: what was started must not run on unlisted.
            await host.RemoveAsync(function.FunctionId, CancellationToken.None);
            throw Problems.Conflict($"function '{function.FunctionId}' was removed or redeployed while it was being deployed; deploy it again");
        }
        _hosts[function.FunctionId] = HostedOf(host, function);
        logger.LogInformation("function {Function} deployed on executor {Executor} ({Replicas} replicas) from {Policy}",
            function.FunctionId, executor.ExecutorId, function.Replicas, uri);
        return running;
    }

    /// <summary>Stops and forgets a function; with <paramref name="ifMatch"/>, only while its revision is one of those listed.</summary>
    public async Task<StoredDocument> RemoveAsync(string name, IfMatchCondition? ifMatch, CancellationToken ct)
    {
        using var named = await _names.AcquireAsync(name, ct);
        var stored = await store.GetAsync(Collections.Functions, name, ct) ?? throw Unknown(name);
        if (ifMatch is not null && !ifMatch.Matches(stored.Revision)) throw ifMatch.Mismatch($"function '{name}'", stored.Revision);
        var function = FunctionDeployment.FromJson(stored.Body);
        _hosts.TryRemove(name, out _);
        try
        {
            await HostFor(function).RemoveAsync(name, ct);
        }
        catch (PolicyGridException e) when (e.Status is 502 or 503)
        {
            // The executor is gone or down: the registry still forgets the function, or it could never be removed.
            logger.LogWarning("function {Function}: its executor could not be told to remove it ({Reason})", name, e.Message);
        }
        await store.DeleteAsync(Collections.Functions, name, null, CancellationToken.None);
        _hosts.TryRemove(name, out _); // a call meanwhile may have cached the host again
        return stored;
    }

    /// <summary>
    /// At start, before requests: finishes what a server that stopped mid-deploy or mid-remove (kill -9, power cut) left
    /// half done between the Function document and this server's own function host. A deploy writes the document
    /// (pending), then starts the function on the host, then marks the document running; a remove stops it on the
    /// host, then deletes the document. Cut short, a deploy left a document pending for good (a deploy sent again was a
    /// 409), and a remove a document that GET answered as running while every call answered 404 "not deployed". Neither
    /// was answered with success, so both are completed the way that leaves no half: the cut-short deploy is undone
    /// (deploy it again), the cut-short remove is finished. Only functions on this server's in-process host are
    /// checked: asking remote hosts would make the start wait for the network.
    /// </summary>
    public async Task ReconcileAsync(CancellationToken ct)
    {
        var functions = await store.QueryEveryAsync(Collections.Functions, ct).ToListAsync(ct);
        foreach (var stored in functions)
        {
            FunctionDeployment function;
            try
            {
                function = FunctionDeployment.FromJson(stored.Body);
            }
            catch (PolicyGridException)
            {
                continue;
            }
            if (!Uri.TryCreate(function.FunctionExecutorUri, UriKind.Absolute, out var uri) || uri.Scheme != Runtime.Transports.InProcExecutorTransport.Scheme) continue;
            IFunctionHost host;
            try
            {
                host = HostFor(function);
            }
            catch (PolicyGridException)
            {
                continue;
            }
            try
            {
                string what;
                if (function.Status == FunctionStatus.Pending)
                {
                    await host.RemoveAsync(function.FunctionId, ct);
                    what = "its deployment was cut short when the server stopped; undone, deploy it again";
                }
                else if (function.Status == FunctionStatus.Running && await host.StatusAsync(function.FunctionId, ct) is null)
                {
                    what = "its removal was cut short when the server stopped; finished";
                }
                else
                {
                    continue;
                }
                await store.DeleteAsync(Collections.Functions, function.FunctionId, stored.Revision, ct);
                logger.LogWarning("function {Function}: {What}", function.FunctionId, what);
            }
            catch (PolicyGridException e) when (e.Status == 409)
            {
                // Changed meanwhile by another registry sharing the store: its own doing.
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // One function that cannot be put right must not keep the server from starting: it stays as it was.
                logger.LogWarning(e, "function {Function}: a deploy or remove cut short when the server stopped could not be completed ({Reason}); remove it and deploy it again",
                    function.FunctionId, e.Message);
            }
        }
    }

    public async Task<JsonObject> CallAsync(string functionId, JsonNode? input, CancellationToken ct = default) =>
        (await CallForAnswerAsync(functionId, input, FunctionCallOrigin.Anonymous, ct)).Output;

    /// <summary>A graph node's call (or any call made for <paramref name="origin"/>), recorded in the decision log with it.</summary>
    public async Task<JsonObject> CallAsync(string functionId, JsonNode? input, FunctionCallOrigin origin, CancellationToken ct) =>
        (await CallForAnswerAsync(functionId, input, origin, ct)).Output;

    /// <summary>
    /// A call, with whether the function's policy is deprecated (the API answers a <c>Deprecation</c> header then). Recorded
    /// in the decision log (kind <c>function_call</c>) whatever the outcome, refusals (404, 410, 400, ...) included.
    /// </summary>
    public Task<PolicyResult> CallForAnswerAsync(string functionId, JsonNode? input, FunctionCallOrigin origin, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(origin);
        var body = input ?? new JsonObject();
        return AuditedAsync(Decision.KindFunctionCall, functionId, origin, () => CanonicalJson.Sha256(body), async audit =>
        {
            var (hosted, deprecated) = await RunnableHostAsync(functionId, audit, ct);
            return new PolicyResult(await ReachAsync(hosted, audit, () => hosted.Host.CallAsync(functionId, body, origin, ct)), deprecated);
        });
    }

    public async Task<JsonObject> ManageAsync(string name, JsonObject body, CancellationToken ct) =>
        (await ManageForAnswerAsync(name, body, FunctionCallOrigin.Anonymous, ct)).Output;

    /// <summary>
    /// Management, with whether the function's policy is deprecated (the API answers a <c>Deprecation</c> header then).
    /// Recorded in the decision log (kind <c>function_management</c>) whatever the outcome.
    /// </summary>
    public Task<PolicyResult> ManageForAnswerAsync(string name, JsonObject body, FunctionCallOrigin origin, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(body);
        ArgumentNullException.ThrowIfNull(origin);
        // The input hash as Type 2 management's: the action and the data.
        return AuditedAsync(Decision.KindFunctionManagement, name, origin, () => CanonicalJson.Sha256(body["action"]?.DeepClone(), body["data"]?.DeepClone() ?? new JsonObject()),
            audit => ManageCheckedAsync(name, body, audit, ct));
    }

    private async Task<PolicyResult> ManageCheckedAsync(string name, JsonObject body, AuditTrail? audit, CancellationToken ct)
    {
        var errors = new List<FieldError>();
        var action = body["action"] is JsonValue a && a.TryGetValue<string>(out var text) && text.Length > 0 ? text : null;
        if (action is null) errors.Add(new("action", "is required and must be a non-empty string"));
        var data = body["data"] switch
        {
            null => [],
            JsonObject o => (JsonObject)o.DeepClone(),
            var other => null,
        };
        if (data is null) errors.Add(new("data", $"must be an object, not a JSON {Envelope.JsonBody.Describe(body["data"])}"));
        if (errors.Count > 0) throw Problems.Validation(errors);
        var (hosted, deprecated) = await RunnableHostAsync(name, audit, ct);
        return new PolicyResult(await ReachAsync(hosted, audit, () => hosted.Host.ManageAsync(name, action!, data!, ct)), deprecated);
    }

    /// <summary>
    /// The host's answer, its executor's outage told as usual. A host that records its own calls (Dapr actors) did not
    /// when it could not be reached (503): the registry records that one. A 503 the host answered itself
    /// (<see cref="NodeUnavailable"/>: the call reached it) is the host's record, not one more here.
    /// </summary>
    private async Task<JsonObject> ReachAsync(Hosted hosted, AuditTrail? audit, Func<Task<JsonObject>> call)
    {
        try
        {
            return await outages.WatchAsync(hosted.ExecutorId, WhileDown, call);
        }
        catch (PolicyGridException e) when (audit is not null && e.Status == 503 && e is not NodeUnavailable)
        {
            audit.RecordedElsewhere = false;
            throw;
        }
    }

    /// <summary>
    /// Runs a function call or management action and records it in the decision log (when this composition keeps one):
    /// the function, the policy it was deployed from and the bundle its snapshot runs (known once the function is found),
    /// the caller and, for a graph node, the graph and run. A host that records its calls itself (the Dapr function
    /// actors, in the same log) is left to record the calls that reached it, so no call is recorded twice.
    /// </summary>
    private Task<PolicyResult> AuditedAsync(string kind, string functionId, FunctionCallOrigin origin, Func<string> inputSha,
        Func<AuditTrail?, Task<PolicyResult>> run)
    {
        if (decisions is null) return run(null);
        var audit = new AuditTrail(kind, "", new CallerIdentity(origin.Caller.Length > 0 ? origin.Caller : CallerIdentity.Anonymous.Name), "", inputSha())
        {
            FunctionId = functionId ?? "",
            GraphId = origin.GraphId,
            ExecutionId = origin.ExecutionId,
        };
        return audit.RunAsync(decisions, () => run(audit));
    }

    public async Task<StoredDocument> GetAsync(string name, CancellationToken ct) =>
        await store.GetAsync(Collections.Functions, name, ct) ?? throw Unknown(name);

    /// <summary>Deployments matching the filter, as reads answer them (secrets of their policy snapshot masked, and never matched on).</summary>
    public Task<IReadOnlyList<JsonObject>> QueryAsync(DocumentQuery query, CancellationToken ct) =>
        RedactedQuery.RunAsync(store, Collections.Functions, query, TemplateSecrets.FunctionSecretPaths,
            static (d, _) => ValueTask.FromResult(FunctionDeployment.FromJson(d.Body).ToRedactedJson()), ct);

    /// <summary>Whether a function of that id is deployed (graphs check every node before running).</summary>
    public async Task<bool> IsDeployedAsync(string name, CancellationToken ct) =>
        _hosts.ContainsKey(name) || await store.GetAsync(Collections.Functions, name, ct) is not null;

    public static FunctionSpec SpecOf(FunctionDeployment function)
    {
        var scaling = function.Autoscaling;
        var autoscale = scaling["enabled"] is JsonValue e && e.TryGetValue<bool>(out var on) && on;
        return new FunctionSpec(function.FunctionId, (JsonObject)function.FunctionPolicyData.DeepClone(), new FunctionScale(
            function.Replicas, autoscale, Count(scaling["min_replicas"], function.Replicas), Count(scaling["max_replicas"], function.Replicas)));
    }

    /// <summary>
    /// What a graph run's outcome says of its nodes' executors, told as a call through here tells it (one warning when
    /// an executor is found down, one line when it answers again, and the run's failure marked as told). The Dapr
    /// workflow calls the function actors itself, so nothing else tells it there: every run whose node's functions app
    /// was down logged a warning of its own. A run through this registry (serve) has told it already; again is a no-op.
    /// </summary>
    public async Task NoteGraphRunAsync(IReadOnlyList<string> nodes, PolicyGridException? failure)
    {
        if (failure is null)
        {
            // Nothing known down (the usual case): no node's executor is looked up, which on Dapr is a store read per node per run.
            if (!outages.AnyDown) return;
            foreach (var node in nodes)
                if (await ExecutorOfAsync(node) is { } answered) outages.Up(answered);
            return;
        }
        if (GraphFailures.FailedNode(failure) is not var (failed, message) || await ExecutorOfAsync(failed) is not { } executor) return;
        if (ExecutorOutages.IsOutage(failure))
        {
            outages.Down(executor, message, WhileDown);
            LoggedFailures.Mark(failure);
        }
        else if (ExecutorOutages.AnsweredByExecutor(failure))
        {
            outages.Up(executor);
        }
    }

    // The executor a deployed function runs on (null when it is gone, or cannot be read now: the run's own answer
    // matters more than this note): known from its first call, else its document.
    private async Task<string?> ExecutorOfAsync(string name)
    {
        if (_hosts.TryGetValue(name, out var hosted)) return hosted.ExecutorId;
        try
        {
            var stored = await store.GetAsync(Collections.Functions, name, CancellationToken.None);
            return stored is null ? null : FunctionDeployment.FromJson(stored.Body).FunctionExecutorId;
        }
        catch (PolicyGridException)
        {
            return null;
        }
    }

    /// <summary>
    /// 410 when the function's policy is retired (graph runs check every node before any runs: the Dapr workflow calls
    /// the actors directly); true when it is deprecated (it runs, and the run's answer says so).
    /// </summary>
    public async Task<bool> EnsureRunnableAsync(string name, CancellationToken ct) => (await RunnableHostAsync(name, null, ct)).Deprecated;

    /// <summary>
    /// The host of a function whose policy may still run, and whether that policy is deprecated (it still runs; the
    /// API adds a <c>Deprecation</c> header to the answer, as for Type 2).
    /// </summary>

    /// <summary>
    /// The host of a function whose policy may still run. A function keeps the snapshot it was deployed with through
    /// later updates of its policy, but retiring the policy stops every execution of it (the contract's 410), a deployed
    /// function's too: it had kept answering. A policy deleted since (force) leaves the snapshot running.
    /// </summary>
    private async Task<(Hosted Host, bool Deprecated)> RunnableHostAsync(string name, AuditTrail? audit, CancellationToken ct)
    {
        if (!_hosts.TryGetValue(name, out var hosted))
        {
            var stored = await store.GetAsync(Collections.Functions, name, ct) ?? throw Unknown(name);
            var function = FunctionDeployment.FromJson(stored.Body);
            hosted = _hosts[name] = HostedOf(HostFor(function), function);
        }
        if (audit is not null) audit.PolicyRuleUri = hosted.PolicyRuleUri;
        var deprecated = false;
        try
        {
            deprecated = (await policies.GetRunnableAsync(hosted.PolicyRuleUri, ct)).IsDeprecated;
        }
        catch (PolicyGridException e) when (e.Status == 410)
        {
            throw Problems.Retired($"function '{name}' runs policy '{hosted.PolicyRuleUri}', which is retired; deploy another version under a new function, or set the policy's status back to active");
        }
        catch (PolicyGridException)
        {
            // Deleted, or of a kind this server does not run itself: the function runs its own snapshot on its host.
        }
        if (audit is not null)
        {
            // Past the retired check the snapshot's bundle is what runs (a refused call ran nothing: empty, as Type 2's 410).
            audit.BundleSha256 = hosted.BundleSha256;
            audit.RecordedElsewhere = audit.Kind == Decision.KindFunctionCall && hosted.Host.RecordsCalls;
        }
        return (hosted, deprecated);
    }

    private IFunctionHost HostFor(FunctionDeployment function) => HostFor(function.FunctionExecutorId, function.FunctionExecutorUri);

    private IFunctionHost HostFor(PolicyExecutor executor) => HostFor(executor.ExecutorId, executor.ExecutorHostUri);

    private IFunctionHost HostFor(string executorId, string hostUri)
    {
        if (!Uri.TryCreate(hostUri, UriKind.Absolute, out var uri))
            throw Problems.BackendError($"executor '{executorId}' has an unreadable executor_host_uri '{hostUri}'");
        var transport = transports.FirstOrDefault(t => t.CanHandle(uri))
            ?? throw Problems.BadRequest($"executor '{executorId}' ({hostUri}) cannot host functions: this server reaches no function host over '{uri.Scheme}://'");
        return transport.For(uri);
    }

    private async Task<PolicyExecutor> ExecutorAsync(string executorId, CancellationToken ct)
    {
        var stored = await store.GetAsync(Collections.Executors, executorId, ct)
            ?? throw Problems.NotFound($"executor '{executorId}' is not registered");
        return PolicyExecutor.FromStored(stored.Body);
    }

    /// <summary>
    /// The allocation rule for an empty executor id: among healthy executors this server can host functions on, the one
    /// with the most free vCPUs (executor_hardware_info.vcpus.count less one per function replica already placed there);
    /// ties go to the first executor id. An executor whose stored document cannot be read for this (written by an older
    /// server that took any hardware info) is passed over with a warning: one bad document must not stop every deployment.
    /// </summary>
    private async Task<PolicyExecutor> AllocateAsync(CancellationToken ct)
    {
        // Every executor and every deployment, however many (only a count per executor of the deployments is kept).
        var executors = (await store.QueryEveryAsync(Collections.Executors, ct).ToListAsync(ct))
            .Select(Allocatable)
            .OfType<PolicyExecutor>()
            .Where(e => e.ExecutorStatus == ExecutorStatus.Healthy && Uri.TryCreate(e.ExecutorHostUri, UriKind.Absolute, out var u) && transports.Any(t => t.CanHandle(u)))
            .ToList();
        if (executors.Count == 0)
            throw Problems.BackendUnavailable("no healthy executor can host functions; register one with POST /executor or name one in the path");
        var placed = new Dictionary<string, int>(StringComparer.Ordinal);
        await foreach (var function in store.QueryEveryAsync(Collections.Functions, ct))
        {
            var executorId = function.Body["function_executor_id"]?.GetValue<string>() ?? "";
            placed[executorId] = placed.GetValueOrDefault(executorId) + PlacedReplicas(function);
        }
        return executors
            .OrderByDescending(e => Vcpus(e) - placed.GetValueOrDefault(e.ExecutorId))
            .ThenBy(e => e.ExecutorId, StringComparer.Ordinal)
            .First();
    }

    private PolicyExecutor? Allocatable(StoredDocument stored)
    {
        if (PolicyExecutor.ForAllocation(stored.Body, out var problems) is { } executor) return executor;
        logger.LogWarning("executor {Executor} is left out of function allocation: its stored document is not valid ({Problems}); fix it with PUT /executor/{Executor}",
            stored.Id, string.Join("; ", problems), stored.Id);
        return null;
    }

    private static double Vcpus(PolicyExecutor executor) => executor.VcpuCount ?? 1;

    private static int Count(JsonNode? node, int fallback) => JsonValues.TryNumber(node, out var n) ? (int)n : fallback;

    // The replicas a deployment runs, as its hosts read it (kept within its autoscaling bounds: a document stored before
    // deployments were clamped may say 10 with max_replicas 3); what is stored as it stands for one no longer readable.
    private static int PlacedReplicas(StoredDocument stored)
    {
        try
        {
            return FunctionDeployment.FromJson(stored.Body).Replicas;
        }
        catch (PolicyGridException)
        {
            return Count(stored.Body["replicas"], 1);
        }
    }

    private static PolicyGridException Unknown(string name) => Problems.NotFound($"function '{name}' is not deployed");
}

/// <summary>
/// Completes, at start, the function deployments and removals that a server stopped mid-way left half done
/// (<see cref="FunctionRegistry.ReconcileAsync"/>). Runs in StartAsync, which the host finishes before it takes requests.
/// </summary>
public sealed class FunctionReconciler(FunctionRegistry functions) : Microsoft.Extensions.Hosting.IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => functions.ReconcileAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
