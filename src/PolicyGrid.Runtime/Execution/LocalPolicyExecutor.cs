using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Templates;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Type 2 on this server's own worker pool: look the policy up (404 / 410), merge call settings
/// and parameters over the stored ones and check them, check the input against
/// policy_input_schema, run eval on a warm instance with its context loaded and saved under the
/// context key (calls sharing a key one at a time), check the output, and log the decision.
/// </summary>
public sealed class LocalPolicyExecutor : IPolicyExecutor
{
    private readonly PolicyCatalog catalog;
    private readonly IPolicyBundleSource bundles;
    private readonly PythonWorkerPool pool;
    private readonly IContextStore contexts;
    private readonly KeyedLocks locks;
    private readonly DecisionLog decisions;
    private readonly ExecutionOptions options;
    private readonly ILogger logger;

    public LocalPolicyExecutor(PolicyCatalog catalog, IPolicyBundleSource bundles, PythonWorkerPool pool, IContextStore contexts,
        KeyedLocks locks, DecisionLog decisions, PolicyRuntimeOptions options, ILogger<LocalPolicyExecutor> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        this.catalog = catalog;
        this.bundles = bundles;
        this.pool = pool;
        this.contexts = contexts;
        this.locks = locks;
        this.decisions = decisions;
        this.options = options.Execution;
        this.logger = logger;
    }

    public Task<PolicyResult> ExecuteAsync(ExecutionRequest request, CallerIdentity caller, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var audit = new AuditTrail("execute", request.PolicyRuleUri, caller, request.ContextKey ?? "", CanonicalJson.Sha256(request.InputData));
        return AuditedAsync(audit, async () =>
        {
            var check = await catalog.GetCheckedAsync(request.PolicyRuleUri, ct);
            var rule = check.Rule;
            audit.PolicyRuleUri = rule.PolicyRuleUri;
            var overrides = request.Settings is { Count: > 0 } || request.Parameters is { Count: > 0 };
            var (settings, parameters) = overrides ? MergeAndCheck(rule, request.Settings, request.Parameters) : (rule.PolicySettings, rule.PolicyParameters);
            if (rule.PolicyInputSchema.Count > 0) TemplateValidator.Ensure(rule.PolicyInputSchema, request.InputData, "input_data");
            var deadline = DeadlineFor(rule, request.TimeoutSeconds);
            var bundle = await bundles.GetAsync(rule.Code, rule.ExpectedCodeSha256, ct);
            audit.BundleSha256 = bundle.Sha256;

            var contextKey = string.IsNullOrEmpty(request.ContextKey) ? rule.PolicyRuleUri : request.ContextKey;
            audit.ContextKey = contextKey;
            var load = overrides ? Shaped(new PolicyLoadSpec(rule.PolicyRuleUri, bundle, settings, parameters)) : StoredShapeOf(rule, bundle);
            var call = new EvalCall(rule, load, request.InputData, contextKey, deadline) { Budget = request.Budget, Check = check };
            var result = writesContext.ContainsKey(rule.PolicyRuleUri)
                ? await EvalSerializedAsync(call, ct)
                : await EvalOptimisticallyAsync(call, ct);
            return new PolicyResult(result, rule.IsDeprecated) { Warnings = overrides ? OverrideWarnings(rule, request.Settings, request.Parameters) : [] };
        });
    }

    private Task<PolicyResult> AuditedAsync(AuditTrail audit, Func<Task<PolicyResult>> run) => audit.RunAsync(decisions, run);

    public Task<PolicyResult> ManageAsync(ManagementRequest request, CallerIdentity caller, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var audit = new AuditTrail("management", request.PolicyRuleUri, caller, "", CanonicalJson.Sha256(JsonValue.Create(request.Action), request.Data));
        return AuditedAsync(audit, async () =>
        {
            var check = await catalog.GetCheckedAsync(request.PolicyRuleUri, ct);
            var rule = check.Rule;
            audit.PolicyRuleUri = rule.PolicyRuleUri;
            if (string.IsNullOrWhiteSpace(request.Action)) throw Problems.Validation("action", "must not be empty");
            ManagementCommands.Ensure(rule.ManagementCommandsSchema, rule.PolicyRuleUri, request.Action, request.Data);
            var (settings, parameters) = MergeAndCheck(rule, request.Settings, request.Parameters);
            var deadline = DeadlineFor(rule, request.TimeoutSeconds);
            var bundle = await bundles.GetAsync(rule.Code, rule.ExpectedCodeSha256, ct);
            audit.BundleSha256 = bundle.Sha256;
            var args = new JsonObject { ["action"] = request.Action, ["data"] = request.Data.DeepClone() };
            // Type 2 is stateless: management runs on a fresh instance that is dropped afterwards.
            var reply = await pool.InvokeOnceAsync(new PolicyLoadSpec(rule.PolicyRuleUri, bundle, settings, parameters), PolicyMethods.Management, args, deadline,
                request.Budget, $"management '{request.Action}' of policy {rule.PolicyRuleUri}", check, ct);
            var result = reply switch
            {
                null => [],
                JsonObject obj => obj,
                _ => throw Problems.PolicyError($"management of {rule.PolicyRuleUri} returned {Describe(reply)}, not a dict"),
            };
            return new PolicyResult(result, rule.IsDeprecated) { Warnings = OverrideWarnings(rule, request.Settings, request.Parameters) };
        });
    }

    // Policies seen changing their context, by URI (not by shape: callers may override parameters with every call,
    // and a map by shape would grow with each new set; the flag only chooses between two correct ways to run).
    // Their calls hold the context key's lock for the whole eval. Others (most policies only read context, or ignore it) run in parallel, and a
    // change they do make is saved only if the stored context is still the one they read; if another
    // call wrote in between, the call is run again under the lock, so every saved context is one a
    // strictly serialized run would have produced.
    private readonly ConcurrentDictionary<string, bool> writesContext = new(StringComparer.Ordinal);

    private sealed record EvalCall(PolicyRule Rule, ShapedLoad Shaped, JsonObject InputData, string ContextKey, TimeSpan Deadline)
    {
        public PolicyLoadSpec Load => Shaped.Load;

        /// <summary>
        /// The node caller's wait (X-PolicyGrid-Timeout-Ms): a call that waited for the context key's lock, or for a worker
        /// (PolicyInvocation.Budget), past it is not started.
        /// </summary>
        public CallBudget? Budget { get; init; }

        /// <summary>
        /// The revision the call was checked against, as the pool's <see cref="StartCheck"/>: a call that waited there for a
        /// worker does not start once its policy was retired or deleted meanwhile (410 / 404, "it did not run").
        /// </summary>
        public StartCheck? Check { get; init; }

        /// <summary>How a 504 of this call not started names it.</summary>
        public string Describe => $"call of policy {Rule.PolicyRuleUri}";
    }

    // InstanceKey: the warm instances of this shape (one per worker, see EvalAsync).
    private sealed record ShapedLoad(PolicyLoadSpec Load, string Shape)
    {
        public string InstanceKey { get; } = "t2:" + Shape;
    }

    private static ShapedLoad Shaped(PolicyLoadSpec load) =>
        new(load, CanonicalJson.Sha256(JsonValue.Create(load.RuleId), JsonValue.Create(load.Bundle.Sha256), load.Settings, load.Parameters));

    // Most calls override nothing, so their load spec and its hash depend only on the parsed rule (one
    // object per stored revision) and its bundle: computed once per rule instead of on every call.
    // The stored settings and parameters are shared read-only (they are only serialized or cloned).
    private readonly ConditionalWeakTable<PolicyRule, ShapedLoad> storedShapes = new();

    private ShapedLoad StoredShapeOf(PolicyRule rule, BundleDirectory bundle)
    {
        if (storedShapes.TryGetValue(rule, out var known) && known.Load.Bundle == bundle) return known;
        var shaped = Shaped(new PolicyLoadSpec(rule.PolicyRuleUri, bundle, rule.PolicySettings, rule.PolicyParameters));
        storedShapes.AddOrUpdate(rule, shaped);
        return shaped;
    }

    private async Task<JsonObject> EvalSerializedAsync(EvalCall call, CancellationToken ct)
    {
        var acquiring = locks.AcquireAsync(call.ContextKey, ct);
        var waited = !acquiring.IsCompleted;
        using (await acquiring)
        {
            // Queued behind the context's other calls (one slow one is enough): one whose caller has given up does not start.
            call.Budget?.EnsureLeftToStart(call.Describe);
            // Nor one whose policy was retired or deleted meanwhile: it was checked before the wait, which can be long.
            if (waited) await EnsureStillRunnableAsync(call, ct);
            var before = await contexts.GetAsync(call.ContextKey, ct) ?? [];
            var (result, after) = await EvalAsync(call, before, ct);
            if (!JsonNode.DeepEquals(before, after))
                await contexts.SetAsync(call.ContextKey, after, options.ContextTtl, CancellationToken.None);
            return result;
        }
    }

    // A call that waited for its context's lock runs the revision it was checked against, but not once the policy is
    // retired or deleted: those stop every execution that has not started (a retired policy's queued calls used to run).
    private async Task EnsureStillRunnableAsync(EvalCall call, CancellationToken ct)
    {
        if (await catalog.GoneSinceAsync(call.Rule.PolicyRuleUri, what =>
                $"policy '{call.Rule.PolicyRuleUri}' was {what} while this call waited for its turn at context '{call.ContextKey}' (calls of a policy that writes its context run one at a time); it did not run",
                ct) is { } gone)
            throw gone;
    }

    private async Task<JsonObject> EvalOptimisticallyAsync(EvalCall call, CancellationToken ct)
    {
        var before = await contexts.GetAsync(call.ContextKey, ct) ?? [];
        var (result, after) = await EvalAsync(call, before, ct);
        if (JsonNode.DeepEquals(before, after)) return result;
        writesContext[call.Rule.PolicyRuleUri] = true;
        using (await locks.AcquireAsync(call.ContextKey, ct))
        {
            var current = await contexts.GetAsync(call.ContextKey, ct) ?? [];
            if (JsonNode.DeepEquals(current, before))
            {
                await contexts.SetAsync(call.ContextKey, after, options.ContextTtl, CancellationToken.None);
                return result;
            }
            // Another call saved first: this answer was computed on a stale context. Run it again on the current one.
            var (rerun, rerunAfter) = await EvalAsync(call, current, ct);
            if (!JsonNode.DeepEquals(current, rerunAfter))
                await contexts.SetAsync(call.ContextKey, rerunAfter, options.ContextTtl, CancellationToken.None);
            return rerun;
        }
    }

    private async Task<(JsonObject Result, JsonObject Context)> EvalAsync(EvalCall call, JsonObject context, CancellationToken ct)
    {
        var args = new JsonObject
        {
            ["input_data"] = call.InputData.DeepClone(),
            ["context"] = context.DeepClone(),
        };
        // Warm instances are keyed by everything that shapes them, so an update to code, settings or
        // parameters gets a new instance; any worker's warm instance of the shape will do, since context
        // travels with the call (short calls share a busy worker's batches, others go to the least busy one).
        // The caller's budget goes along: a call still queued for a worker, or behind others in a worker's batch, when it
        // runs out is not started there either (504, nothing saved).
        // So does the policy's check: a call that waited for a busy worker is not sent once its policy is retired or deleted.
        var invocation = new PolicyInvocation(call.Shaped.InstanceKey, call.Load, PolicyMethods.Eval, args, call.Deadline) { StartCheck = call.Check };
        if (call.Budget is { } budget) invocation = invocation with { Budget = budget, Call = call.Describe };
        var reply = await pool.InvokeOnAnyWorkerAsync(invocation, ct);
        var result = reply?["result"] as JsonObject
            ?? throw Problems.PolicyError($"eval of {call.Rule.PolicyRuleUri} returned {Describe(reply?["result"])}, not a dict");
        CheckOutput(call.Rule, result);
        var after = reply!["context"] as JsonObject ?? [];
        // Detach both from the reply so callers can put them into envelopes and stores.
        var replyObject = reply.AsObject();
        replyObject.Remove("result");
        replyObject.Remove("context");
        return (result, after);
    }

    /// <summary>
    /// Given keys win over stored ones; a call that overrides anything is checked against the templates. A secret given
    /// as "***" is the stored one, as in an update: a caller that passes back the settings or parameters it read (where
    /// secrets read "***") ran the policy with the mask itself, or was refused by the secret's pattern.
    /// </summary>
    internal static (JsonObject Settings, JsonObject Parameters) MergeAndCheck(PolicyRule rule, JsonObject? settings, JsonObject? parameters)
    {
        if (settings is { Count: > 0 } && TemplateSecrets.HasSecrets(rule.PolicySettingsSchema))
            settings = TemplateSecrets.Restore(rule.PolicySettingsSchema, settings, rule.PolicySettings);
        if (parameters is { Count: > 0 } && TemplateSecrets.HasSecrets(rule.PolicyParametersSchema))
            parameters = TemplateSecrets.Restore(rule.PolicyParametersSchema, parameters, rule.PolicyParameters);
        var mergedSettings = Merge(rule.PolicySettings, settings);
        var mergedParameters = Merge(rule.PolicyParameters, parameters);
        var errors = new List<FieldError>();
        if (settings is { Count: > 0 }) errors.AddRange(TemplateValidator.Validate(rule.PolicySettingsSchema, mergedSettings, "settings"));
        if (parameters is { Count: > 0 }) errors.AddRange(TemplateValidator.Validate(rule.PolicyParametersSchema, mergedParameters, "parameters"));
        if (errors.Count > 0) throw Problems.Validation(errors);
        return (mergedSettings, mergedParameters);
    }

    /// <summary>
    /// Override keys one slip from a key of the policy's template that they are not (<c>limitt</c> for <c>limit</c>): the
    /// call ran with the stored value of the key meant (unless it gave that too), and said nothing. Templates need not list every key a
    /// policy reads, so other unlisted keys pass without a word.
    /// </summary>
    internal static IReadOnlyList<string> OverrideWarnings(PolicyRule rule, JsonObject? settings, JsonObject? parameters)
    {
        List<string>? warnings = null;
        Check(settings, rule.PolicySettingsSchema, "settings", "policy_settings_schema");
        Check(parameters, rule.PolicyParametersSchema, "parameters", "policy_parameters_schema");
        return warnings ?? (IReadOnlyList<string>)[];

        void Check(JsonObject? given, JsonObject template, string field, string templateField)
        {
            if (given is not { Count: > 0 } || template.Count == 0) return;
            foreach (var (key, _) in given)
            {
                if (template.ContainsKey(key) || FieldNames.Closest(key, template.Select(p => p.Key)) is not { } meant) continue;
                (warnings ??= []).Add($"'{field}.{key}' is not in the policy's {templateField}, so the policy may read nothing by that name; " +
                    $"did you mean '{field}.{meant}'?");
            }
        }
    }

    private static JsonObject Merge(JsonObject stored, JsonObject? given)
    {
        var merged = (JsonObject)stored.DeepClone();
        if (given is null) return merged;
        foreach (var (key, value) in given) merged[key] = value?.DeepClone();
        return merged;
    }

    internal TimeSpan DeadlineFor(PolicyRule rule, double? callSeconds)
    {
        if (callSeconds is { } seconds)
        {
            if (!(seconds > 0) || double.IsInfinity(seconds))
                throw Problems.Validation("timeout_seconds", "must be a number greater than 0");
            if (TimeSpan.FromSeconds(seconds) > options.MaxTimeout)
                throw Problems.Validation("timeout_seconds", $"must be at most {options.MaxTimeout.TotalSeconds:0.###}");
            return TimeSpan.FromSeconds(seconds);
        }
        // An estimate the clock cannot hold (1e-9 is zero ticks) is passed over like any other unusable one: as a
        // deadline of zero it failed every call with a 400 about a timeout_seconds the caller never sent.
        if (PolicyRule.TimeoutEstimate(rule.ResourceEstimates) is { } fromPolicy)
            return fromPolicy > options.MaxTimeout ? options.MaxTimeout : fromPolicy;
        return options.DefaultTimeout;
    }

    private void CheckOutput(PolicyRule rule, JsonObject result)
    {
        if (options.OutputSchemaMode == OutputSchemaMode.Off || rule.PolicyOutputSchema.Count == 0) return;
        var errors = TemplateValidator.Validate(rule.PolicyOutputSchema, result, "result");
        if (errors.Count == 0) return;
        var message = $"the answer of {rule.PolicyRuleUri} does not match its policy_output_schema: {string.Join("; ", errors)}";
        if (options.OutputSchemaMode == OutputSchemaMode.Enforce) throw Problems.PolicyError(message);
        logger.LogWarning("{Message}", message);
    }

    private static string Describe(JsonNode? node) => node switch
    {
        null => "None",
        JsonArray => "a list",
        JsonValue v => $"a {v.GetValueKind().ToString().ToLowerInvariant()}",
        _ => "a dict",
    };
}
