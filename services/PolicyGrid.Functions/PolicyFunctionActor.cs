using System.Text.Json;
using System.Text.Json.Nodes;
using Dapr.Actors.Runtime;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Functions;

/// <summary>
/// One Type 4 function replica (actor id = the function name, or <c>name~i</c>: <see cref="FunctionActors.Replica"/>). Dapr runs one method of an actor at a
/// time, which is the function's turn-based promise. The policy snapshot, <c>context</c> and the instance's
/// <c>get_state()</c> live in actor state and are saved after every call, so deactivation or a restarted pod loses
/// nothing: the next call recreates the warm instance in this app's worker pool with <c>set_state(saved)</c>.
/// For a class without <c>get_state</c>, whose instance holds management actions that no saved state includes, each
/// management action that succeeds goes into a journal in actor state (saved with the rest of its turn); an instance
/// the actor recreates (activation, a redeployment that could not load, a dropped instance) replays it, in order,
/// before it runs anything else.
/// </summary>
public sealed class PolicyFunctionActor : Actor, IPolicyFunctionActor
{
    private const string DeploymentKey = "deployment";
    private const string ContextKey = "context";
    private const string StateKey = "state";
    private const string CallsKey = "calls";
    private const string JournalKey = "journal";

    private readonly PythonWorkerPool _pool;
    private readonly IPolicyBundleSource _bundles;
    private readonly FunctionActorOptions _options;

    private bool _loaded;
    private FunctionActorDeployment? _deployment;
    private PolicyLoadSpec? _load;
    // The deployed policy snapshot (set with _load): calls check their input against its policy_input_schema.
    private JsonObject? _policy;
    private JsonObject _context = [];
    private JsonObject? _state;
    // Whether the instance's class has get_state, as its last answer said (null before one in this activation).
    private bool? _keepsState;
    private long _calls;
    // What actor state holds (serialized), so a turn that changed nothing writes nothing.
    private string? _savedContext;
    private string? _savedState;
    // Management actions that succeeded on an instance of a class without get_state, oldest first: what an instance
    // created from the deployment lacks, replayed on it first. Empty for a class with get_state (its saved state includes them).
    private readonly ManagementJournal _journal;
    // How many entries actor state holds: entries are only appended or all dropped, so a count says what changed.
    private int _savedJournal;

    // The documents' policies: a call or management action whose policy is retired does not run (null in tests without a store).
    private readonly PolicyCatalog? _policies;

    // Where every call is recorded (the app's decision log, on the shared store the registry's writes to); null: not recorded.
    private readonly DecisionLog? _decisions;

    public PolicyFunctionActor(ActorHost host, PythonWorkerPool pool, IPolicyBundleSource bundles, IOptions<FunctionActorOptions> options,
        IActorStateManager? stateManager = null, PolicyCatalog? policies = null, DecisionLog? decisions = null) : base(host)
    {
        _pool = pool;
        _bundles = bundles;
        _policies = policies;
        _decisions = decisions;
        _options = options.Value;
        _journal = new ManagementJournal(pool, InstanceKey, () => $"function {_deployment?.Name ?? FunctionActors.FunctionName(Id)} (actor {Id.GetId()})", Logger);
        // Tests hand in their own state manager; the runtime's is used otherwise.
        if (stateManager is not null) StateManager = stateManager;
    }

    /// <summary>The worker pool's key for this actor's warm instance.</summary>
    public string InstanceKey => $"actor:{Id.GetId()}";

    protected override Task OnActivateAsync() => LoadAsync();

    // Idle actors give their worker back; the state is already saved, so nothing else needs doing.
    protected override Task OnDeactivateAsync() => _pool.ReleaseAsync(InstanceKey);

    public async Task<FunctionReply> DeployAsync(FunctionActorDeployment deployment)
    {
        ArgumentNullException.ThrowIfNull(deployment);
        try
        {
            // Read and loaded before anything of this actor changes: a deployment that cannot load leaves the one before
            // it (its policy, context and state) as it was, in memory as in actor state, and answers why.
            var (load, policy) = await ReadSpecAsync(deployment);
            await _journal.DropInstanceAsync();
            try
            {
                // Load now: a policy that cannot load fails the deployment, not its first caller.
                await _pool.InvokeAsync(new PolicyInvocation(InstanceKey, load, PolicyMethods.Load, [], _options.CallTimeout) { KeepsWarm = true });
            }
            catch
            {
                // The next call recreates the earlier deployment's instance from its saved state.
                await _pool.ReleaseAsync(InstanceKey);
                throw;
            }
            // The new instance starts from the new deployment: earlier management actions are gone, as in serve.
            StartAfresh(deployment, load, policy);
            _calls = 0;
            await StateManager.SetStateAsync(DeploymentKey, deployment);
            await StateManager.TryRemoveStateAsync(ContextKey);
            await StateManager.TryRemoveStateAsync(StateKey);
            await StateManager.TryRemoveStateAsync(JournalKey);
            await StateManager.SetStateAsync(CallsKey, 0L);
            await StateManager.SaveStateAsync();
            return FunctionReply.Success([]);
        }
        catch (PolicyGridException e)
        {
            return FunctionReply.Failure(e);
        }
    }

    public Task<FunctionReply> CallAsync(FunctionActorCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return RecordedAsync(call, () => EvalAsync(call));
    }

    /// <summary>
    /// A call and its record in the decision log (kind <c>function_call</c>), whoever sent it: the registry (a user's call,
    /// or a graph run on the registry) or the graph workflow, which calls actors directly. The caller and graph run are
    /// what the call carries; a call that carries no caller (an older sender) is recorded as "unknown".
    /// </summary>
    private async Task<FunctionReply> RecordedAsync(FunctionActorCall call, Func<Task<FunctionReply>> turn)
    {
        if (_decisions is null) return await turn();
        JsonNode? input;
        try { input = JsonNode.Parse(call.InputJson); }
        catch (JsonException) { input = JsonValue.Create(call.InputJson); } // the turn answers it; the record hashes it as text
        var audit = new AuditTrail(Decision.KindFunctionCall, "", new CallerIdentity(call.Caller.Length > 0 ? call.Caller : UnknownCaller), "",
            CanonicalJson.Sha256(input ?? new JsonObject()))
        {
            FunctionId = FunctionActors.FunctionName(Id),
            GraphId = call.GraphId,
            ExecutionId = call.ExecutionId,
        };
        FunctionReply? reply = null;
        try
        {
            await audit.RunAsync(_decisions, async () =>
            {
                reply = await turn();
                if (_policy?["policy_rule_uri"] is JsonValue uri && uri.TryGetValue<string>(out var text)) audit.PolicyRuleUri = text;
                // A refused call (retired, not deployed) ran nothing: no bundle, as the registry's own refusals.
                if (reply.Status is not (404 or 410) && _load is not null) audit.BundleSha256 = _load.Bundle.Sha256;
                return reply.Unwrap();
            });
        }
        catch (PolicyGridException e)
        {
            // Recorded with its status and code; the reply carries the failure back to the caller. A turn answers its own
            // failures, so a call with no reply is one the decision log refused before the turn (Decisions:WhenUnrecorded=refuse).
            reply ??= FunctionReply.Failure(e);
        }
        return reply!; // set by the turn, or by the refusal above
    }

    /// <summary>The caller a call records when its sender did not say who asked.</summary>
    public const string UnknownCaller = "unknown";

    private Task<FunctionReply> EvalAsync(FunctionActorCall call)
    {
        return TurnAsync(async load =>
        {
            var input = JsonNode.Parse(call.InputJson);
            // Checked in the actor, where the snapshot is, so every path to it (registry, graph workflow) is covered.
            FunctionSpec.EnsureValidInput(_policy!, input);
            var arguments = new JsonObject
            {
                ["input_data"] = input,
                ["context"] = _context.DeepClone(),
            };
            var reply = await InvokeAsync(load, PolicyMethods.Eval, arguments) as JsonObject;
            var result = FunctionSpec.EvalAnswer(reply?["result"], _deployment!.Name);
            if (reply?["context"] is JsonObject context) _context = (JsonObject)context.DeepClone();
            _calls++;
            return result;
        }, "call");
    }

    public Task<FunctionReply> ManageAsync(FunctionActorManagement request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return TurnAsync(async load =>
        {
            var data = JsonNode.Parse(request.DataJson) ?? new JsonObject();
            FunctionSpec.EnsureKnownCommand(_policy!, request.Action, data);
            // Only a class without get_state journals, so a journal this long is one of those (an empty one says nothing,
            // so a limit below 1 acts as 1): refused before it runs, or the action would live on an instance that a
            // reactivation recreates without it.
            var readOnly = FunctionSpec.IsReadOnlyCommand(_policy!, request.Action);
            if (!readOnly && _journal.Count > 0 && _journal.Count >= _options.MaxJournalEntries)
                throw FunctionSpec.JournalFull(_deployment!.Name, _journal.Count);
            var reply = await InvokeAsync(load, PolicyMethods.Management, new JsonObject { ["action"] = request.Action, ["data"] = data.DeepClone() });
            // An answer that is no dict fails before anything is journalled, as if management had raised.
            var answer = FunctionSpec.ManagementAnswer(reply, _deployment!.Name, request.Action);
            if (_keepsState == false && !readOnly) _journal.Add(request.Action, data);
            return answer;
        }, $"management '{request.Action}'");
    }

    /// <summary>
    /// Checked in the actor's turn, so it covers every path to it: the registry checks before it calls, but the graph
    /// workflow calls actors directly (a later node of a run that started before its policy was retired ran), and a call
    /// can wait long for its turn. A policy deleted since (force) leaves the snapshot running, as in serve; a status that
    /// cannot be read (the store unreachable) fails the call rather than run a policy that may be retired.
    /// </summary>
    private async Task EnsureNotRetiredAsync(string what)
    {
        if (_policies is null || _policy?["policy_rule_uri"] is not JsonValue value || !value.TryGetValue<string>(out var uri) || uri.Length == 0) return;
        try
        {
            await _policies.GetRunnableAsync(uri, CancellationToken.None);
        }
        catch (PolicyGridException e) when (e.Status == 410)
        {
            throw Problems.Retired($"function '{_deployment!.Name}' runs policy '{uri}', which is retired ({what} of function {_deployment.Name} not run); " +
                "deploy another version under a new function, or set the policy's status back to active");
        }
        catch (PolicyGridException e) when (e.Status == 404)
        {
            // Deleted (force) since it was deployed: the deployment's snapshot runs on, as in serve. Any other failure (the
            // store unreachable) is the call's: a policy whose status cannot be read is not run.
        }
    }

    public Task<FunctionReply> SnapshotAsync() => TurnAsync(_ => Task.FromResult(new JsonObject
    {
        ["context"] = _context.DeepClone(),
        ["state"] = _state?.DeepClone(),
        ["journal"] = _journal.ToJson(),
    }));

    public async Task<FunctionReply> RestartFromAsync(FunctionActorSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        try
        {
            await LoadAsync();
            if (_load is null) throw Problems.NotFound($"function '{FunctionActors.FunctionName(Id)}' is not deployed");
            if (FunctionSpec.IsReadOnlyCommand(_policy!, snapshot.Action))
                throw Problems.Conflict($"management '{snapshot.Action}' is read_only: it is not restarted from another replica");
            var from = JsonNode.Parse(snapshot.SnapshotJson) as JsonObject
                ?? throw Problems.BadRequest("a replica snapshot must be a JSON object");
            // Whatever the live instance holds (part of the action that failed on it) goes.
            await _pool.ReleaseAsync(InstanceKey);
            if (from["state"] is JsonObject state)
            {
                // A class with get_state: the other replica's context and state include the action; set_state restores them.
                (_context, _state) = (from["context"] as JsonObject is { } c ? (JsonObject)c.DeepClone() : [], (JsonObject)state.DeepClone());
                _journal.Reset([], replayDue: false);
            }
            else
            {
                // Without: its instance cannot be copied, its journal can; a fresh instance replays it before the next call.
                _journal.Reset(ManagementJournal.FromJson(from["journal"]?.GetValue<string>()), replayDue: true);
            }
            var context = _context.ToJsonString();
            if (context != _savedContext) await StateManager.SetStateAsync(ContextKey, _savedContext = context);
            var saved = _state?.ToJsonString();
            if (saved is not null && saved != _savedState) await StateManager.SetStateAsync(StateKey, _savedState = saved);
            if (_journal.Count == 0) await StateManager.TryRemoveStateAsync(JournalKey);
            else await StateManager.SetStateAsync(JournalKey, _journal.ToJson());
            _savedJournal = _journal.Count;
            await StateManager.SaveStateAsync();
            return FunctionReply.Success([]);
        }
        catch (PolicyGridException e)
        {
            return FunctionReply.Failure(e);
        }
    }

    public async Task RemoveAsync()
    {
        await _pool.ReleaseAsync(InstanceKey);
        foreach (var key in new[] { DeploymentKey, ContextKey, StateKey, CallsKey, JournalKey })
            await StateManager.TryRemoveStateAsync(key);
        await StateManager.SaveStateAsync();
        StartAfresh(null, null, null);
    }

    // What this actor holds in memory for a deployment (or none): no context, state or journal yet, nothing saved.
    private void StartAfresh(FunctionActorDeployment? deployment, PolicyLoadSpec? load, JsonObject? policy)
    {
        (_deployment, _load, _policy) = (deployment, load, policy);
        (_context, _state, _savedContext, _savedState) = ([], null, null, null);
        _journal.Reset([], replayDue: false);
        _savedJournal = 0;
        _loaded = true;
    }

    public async Task<FunctionActorStatus> StatusAsync()
    {
        await LoadAsync();
        return new FunctionActorStatus(_deployment is not null, _deployment?.Name ?? FunctionActors.FunctionName(Id), _calls);
    }

    /// <summary>
    /// Runs one turn on the instance, then saves what it changed; failures come back as a reply with the contract's status
    /// and code. A call or management action (<paramref name="checkRetired"/> names it) is refused first when its policy is
    /// retired, before the instance's journal is replayed: a retired policy's code runs for nothing, and a replay that fails
    /// answered its own error (422 "could not apply management ...", on every call) instead of the 410.
    /// </summary>
    private async Task<FunctionReply> TurnAsync(Func<PolicyLoadSpec, Task<JsonObject>> work, string? checkRetired = null)
    {
        try
        {
            await LoadOrFailAsync();
            var load = _load ?? throw Problems.NotFound($"function '{FunctionActors.FunctionName(Id)}' is not deployed");
            if (checkRetired is not null) await EnsureNotRetiredAsync(checkRetired);
            var calls = _calls;
            var (context0, state0) = (_context, _state);
            JsonObject result;
            try
            {
                // The journal is replayed first when the instance may lack it; when the pool recreated the instance without
                // it (evicted, or its worker replaced) under the method, that answer is dropped with the instance, and the
                // turn runs again once the journal is back.
                result = await _journal.RunAsync(() => work(load), entry => InvokeAsync(load, PolicyMethods.Management, new JsonObject
                {
                    ["action"] = entry.Action,
                    ["data"] = JsonNode.Parse(entry.DataJson),
                }, replaying: true), () => (_context, _state) = (context0, state0));
            }
            catch (PolicyGridException e) when (e.Code == ErrorCodes.PolicyError)
            {
                // The policy raised (or answered no dict) part way: its live instance may hold what the call changed before
                // that, though nothing of the call is saved or journalled. Dropped, it is recreated on the next call as a
                // reactivation recreates it: with set_state(saved), or, for a class without get_state, from the deployment
                // with the journal replayed first. That instance used to be kept, holding a change no journal had.
                (_context, _state) = (context0, state0);
                await _journal.DropInstanceAsync();
                throw;
            }
            catch (PolicyGridException e) when (e.Code is ErrorCodes.PolicyCrashed or ErrorCodes.PolicyMemoryLimit or ErrorCodes.PolicyTimeout)
            {
                // The worker that held the instance is (or may be) replaced: the next turn's instance is created from the
                // deployment, and dropped here so the journal is never applied twice to one that survived.
                await _journal.DropInstanceAsync();
                throw;
            }
            await SaveTurnAsync(calls);
            return FunctionReply.Success(result);
        }
        catch (PolicyGridException e)
        {
            return FunctionReply.Failure(e);
        }
    }

    /// <summary>
    /// Saves what the turn changed. When the state store refuses (a store or sidecar down, a write that timed out), the
    /// turn fails with a 503 and must leave nothing here either: the actor forgets what it holds (the state manager's
    /// cache too, which the runtime clears only when a method throws) and reads everything from the store on its next
    /// turn, and the live instance, which holds what the call did, goes. It used to keep the change in memory, marked as
    /// saved: a counter went on from the unsaved count, back to the saved one when the actor was reactivated.
    /// </summary>
    private async Task SaveTurnAsync(long calls)
    {
        try
        {
            await SaveChangesAsync(calls);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            await StateManager.ClearCacheAsync();
            await _pool.ReleaseAsync(InstanceKey);
            _loaded = false;
            throw e as PolicyGridException ?? Problems.BackendUnavailable(
                $"function {_deployment?.Name ?? FunctionActors.FunctionName(Id)}: the actor state store did not take what the call changed " +
                $"({e.Message}); it may or may not have been saved, and the next call goes on from what the store holds", e);
        }
    }

    private async Task SaveChangesAsync(long calls)
    {
        // Only what the turn changed is written: an unchanged context or state is not saved again.
        var changed = false;
        var context = _context.ToJsonString();
        if (context != _savedContext)
        {
            await StateManager.SetStateAsync(ContextKey, context);
            _savedContext = context;
            changed = true;
        }
        var state = _state?.ToJsonString();
        if (state is not null && state != _savedState)
        {
            await StateManager.SetStateAsync(StateKey, state);
            _savedState = state;
            changed = true;
        }
        if (_calls != calls)
        {
            await StateManager.SetStateAsync(CallsKey, _calls);
            changed = true;
        }
        // A class with get_state has every action in its saved state: nothing to replay, so nothing is kept.
        if (_keepsState == true) _journal.Clear();
        if (_journal.Count != _savedJournal)
        {
            if (_journal.Count == 0) await StateManager.TryRemoveStateAsync(JournalKey);
            else await StateManager.SetStateAsync(JournalKey, _journal.ToJson());
            _savedJournal = _journal.Count;
            changed = true;
        }
        if (changed) await StateManager.SaveStateAsync();
    }

    // The saved state rides along: when the pool (re)creates the instance it calls set_state with it first. The
    // instance's get_state() comes back in the same worker round trip.
    // An instance the pool created for a method outside a replay lacks the journal: the journal drops it and the turn runs
    // again after the replay (ManagementJournal.InvokeAsync), whether the method answered there or raised.
    // A call or management action (not a replay) takes the policy's check into the pool: one that waited there for the
    // policy's worker (busy with another function or replica of the same policy) is not sent once the policy was retired
    // meanwhile (410), as on serve; the check at the start of the turn (EnsureNotRetiredAsync) saw it active.
    private async Task<JsonNode?> InvokeAsync(PolicyLoadSpec load, string method, JsonObject arguments, bool replaying = false)
    {
        var answer = await _journal.InvokeAsync(new PolicyInvocation(InstanceKey, load, method, arguments, _options.CallTimeout, _state)
            { StartCheck = replaying ? null : PolicyCheck(method), KeepsWarm = true }, replaying);
        _keepsState = answer.KeepsState;
        _state = answer.State;
        return answer.Value;
    }

    // The pool's check of the deployed policy (made once per policy URI this actor runs); null without a policy store.
    private (string Uri, StartCheck Check)? _policyCheck;

    private StartCheck? PolicyCheck(string method)
    {
        if (_policies is null || _policy?["policy_rule_uri"] is not JsonValue value || !value.TryGetValue<string>(out var uri) || uri.Length == 0) return null;
        if (_policyCheck is not { } made || made.Uri != uri)
        {
            var name = _deployment?.Name ?? FunctionActors.FunctionName(Id);
            _policyCheck = made = (uri, _policies.RetiredCheck(uri, () =>
                $"function '{name}' runs policy '{uri}', which was retired while this call waited for a policy worker (the policy's workers " +
                "were busy), so it did not run; deploy another version under a new function, or set the policy's status back to active"));
        }
        return method == PolicyMethods.Eval || method == PolicyMethods.Management ? made.Check : null;
    }

    /// <summary>
    /// <see cref="LoadAsync"/> in a turn (the first after a save the store refused reads everything again): a state store
    /// that cannot be read is the turn's 503, answered and recorded as the actor's. Thrown out of the actor method, it
    /// reached the caller as the functions app unreachable, and the registry recorded the call a second time.
    /// </summary>
    private async Task LoadOrFailAsync()
    {
        try
        {
            await LoadAsync();
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            // Read again from the store on the next turn (LoadAsync did not finish: _loaded stays false).
            await StateManager.ClearCacheAsync();
            throw Problems.BackendUnavailable($"function {FunctionActors.FunctionName(Id)}: the actor state store could not be read ({e.Message}); retry", e);
        }
    }

    private async Task LoadAsync()
    {
        if (_loaded) return;
        var deployment = await StateManager.TryGetStateAsync<FunctionActorDeployment>(DeploymentKey);
        if (deployment.HasValue)
        {
            _deployment = deployment.Value;
            (_load, _policy) = await ReadSpecAsync(deployment.Value);
            var context = await StateManager.TryGetStateAsync<string>(ContextKey);
            _context = context.HasValue && JsonNode.Parse(context.Value) is JsonObject c ? c : [];
            _savedContext = context.HasValue ? context.Value : null;
            var state = await StateManager.TryGetStateAsync<string>(StateKey);
            _state = state.HasValue ? JsonNode.Parse(state.Value) as JsonObject : null;
            _savedState = state.HasValue ? state.Value : null;
            var calls = await StateManager.TryGetStateAsync<long>(CallsKey);
            _calls = calls.HasValue ? calls.Value : 0;
            var journal = await StateManager.TryGetStateAsync<string>(JournalKey);
            _journal.Reset(ManagementJournal.FromJson(journal.HasValue ? journal.Value : null), replayDue: false);
            _savedJournal = _journal.Count;
            // Whatever instance the pool holds under this key is not known to have the journal: start it afresh.
            if (_journal.Count > 0) await _journal.DropInstanceAsync();
        }
        _loaded = true;
    }

    /// <summary>The deployment's policy snapshot and what loads it; changes nothing of this actor.</summary>
    private async Task<(PolicyLoadSpec Load, JsonObject Policy)> ReadSpecAsync(FunctionActorDeployment deployment)
    {
        var policy = JsonNode.Parse(deployment.PolicyJson) as JsonObject
            ?? throw Problems.Validation("function_policy_data", "must be the policy document the function runs");
        var code = policy["code"]?.GetValue<string>() ?? throw Problems.Validation("function_policy_data.code", "is required");
        // The snapshot carries the code_sha256 its policy recorded (none for policies stored before it existed).
        var expected = PolicyRule.RecordedCodeSha256(policy);
        var bundle = await _bundles.GetAsync(code, expected, CancellationToken.None);
        return (new PolicyLoadSpec(policy["policy_rule_uri"]?.GetValue<string>() ?? deployment.Name, bundle,
            policy["policy_settings"] as JsonObject is { } s ? (JsonObject)s.DeepClone() : [],
            policy["policy_parameters"] as JsonObject is { } p ? (JsonObject)p.DeepClone() : []), policy);
    }
}

/// <summary>Limits of function actors (configuration section <c>PolicyGrid:Functions</c>).</summary>
public sealed class FunctionActorOptions
{
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an actor stays active without calls before Dapr deactivates it (its worker is then freed).</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How many management actions an actor of a class without <c>get_state</c> keeps to replay on a recreated instance;
    /// past it management answers 409 until the function is redeployed (each action costs a worker round trip on every
    /// reactivation, and the whole journal is one actor state value).
    /// </summary>
    public int MaxJournalEntries { get; set; } = 1000;
}
