using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Embedded.Functions;

/// <summary>
/// The embedded Type 4 host. Each replica of a function is its own warm instance in the worker pool (instance key
/// <c>fn:{name}#{i}</c>) that takes one call at a time; calls go to the least busy replica. After every call the
/// replica's <c>context</c> and (where the class has <c>get_state</c>) its instance state are written to the context
/// store, and deployments to the document store, so a restarted server picks every function up where it stopped:
/// functions come back on first use and the pool recreates the instance with <c>set_state(saved)</c>.
/// </summary>
public sealed class LocalFunctionHost(
    PythonWorkerPool pool,
    IPolicyBundleSource bundles,
    IDocumentStore documents,
    IContextStore contexts,
    PolicyCatalog policies,
    IOptions<FunctionHostOptions> options,
    ILogger<LocalFunctionHost> logger) : IFunctionHost, IHostedService, IAsyncDisposable
{
    /// <summary>This host's own record of what it runs (the registry's Function documents live in <see cref="Collections.Functions"/>).</summary>
    public const string Collection = "hosted_functions";

    private readonly ConcurrentDictionary<string, HostedFunction> _live = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _catalog = new(1, 1);
    private readonly FunctionHostOptions _options = options.Value;
    private ITimer? _shrinkTimer;

    public async Task DeployAsync(FunctionSpec spec, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        await _catalog.WaitAsync(ct);
        try
        {
            var old = _live.TryRemove(spec.Name, out var running) ? running : await LoadAsync(spec.Name, ct);
            if (old is not null) await StopAsync(old, forget: true, ct);

            var function = new HostedFunction(spec, await LoadSpecAsync(spec, ct));
            for (var i = 0; i < spec.Scale.Initial; i++) function.AddReplica();
            try
            {
                // Warm every replica now: a policy that cannot load fails the deployment, not its first caller.
                foreach (var replica in function.Replicas)
                {
                    replica.Loaded = true;
                    await pool.InvokeAsync(new PolicyInvocation(replica.InstanceKey, function.Load, PolicyMethods.Load, [], _options.CallTimeout) { KeepsWarm = true }, ct);
                }
            }
            catch
            {
                await StopAsync(function, forget: true, CancellationToken.None);
                throw;
            }
            await documents.UpsertAsync(Collection, spec.Name, ToJson(spec), ct);
            _live[spec.Name] = function;
        }
        finally
        {
            _catalog.Release();
        }
    }

    public Task<JsonObject> CallAsync(string name, JsonNode? input, CancellationToken ct = default) => CallAsync(name, input, null, ct);

    /// <summary>A call whose caller waits no longer than <paramref name="budget"/>: still waiting for its instance's turn past it, it does not start (504).</summary>
    public async Task<JsonObject> CallAsync(string name, JsonNode? input, CallBudget? budget, CancellationToken ct)
    {
        var function = await GetAsync(name, ct);
        // Before a replica is picked: a caller's bad input neither waits for a turn nor reaches the policy.
        FunctionSpec.EnsureValidInput(function.Spec.Policy, input);
        var (replica, added) = function.Route(_options.ScaleUpQueueDepth);
        // Named by the instance added: a count read now may already include another added at the same moment.
        if (added) logger.LogInformation("function {Function} scaled up: instance #{Index} started", name, replica.Index);
        try
        {
            return await InTurnAsync(function, replica, async () =>
            {
                var arguments = new JsonObject
                {
                    ["input_data"] = input?.DeepClone(),
                    ["context"] = replica.Context.DeepClone(),
                };
                var reply = await InvokeAsync(function, replica, PolicyMethods.Eval, arguments, ct, budget: budget, call: $"call of function {name}", checkPolicy: true) as JsonObject;
                var result = FunctionSpec.EvalAnswer(reply?["result"], name);
                if (reply?["context"] is JsonObject context) replica.Context = (JsonObject)context.DeepClone();
                return result;
            }, ct, budget, $"call of function {name}", checkPolicy: true);
        }
        finally
        {
            replica.Leave();
        }
    }

    /// <summary>
    /// Runs a management action on the first instance; if it fails, that is the answer and nothing else changes. If it
    /// succeeds it goes into the function's journal (persisted) before the answer, and every other instance applies it
    /// in its next turn: now for those running, on start for those autoscaling or a restart starts later. An instance
    /// where it then fails is restarted from the first instance's state (or, for a class without get_state, from the
    /// deployment and the whole journal), so no instance keeps answering without it.
    /// </summary>
    public Task<JsonObject> ManageAsync(string name, string action, JsonObject data, CancellationToken ct = default) =>
        ManageAsync(name, action, data, null, ct);

    /// <summary>Management whose caller waits no longer than <paramref name="budget"/>: not started past it (504), nor journalled.</summary>
    public async Task<JsonObject> ManageAsync(string name, string action, JsonObject data, CallBudget? budget, CancellationToken ct)
    {
        var function = await GetAsync(name, ct);
        FunctionSpec.EnsureKnownCommand(function.Spec.Policy, action, data);
        var readOnly = FunctionSpec.IsReadOnlyCommand(function.Spec.Policy, action);
        await function.ManagementGate.WaitAsync(ct);
        try
        {
            var replicas = function.Replicas;
            var leader = replicas[0];
            JsonObject answer;
            leader.Enter();
            try
            {
                answer = await InTurnAsync(function, leader, async () =>
                {
                    // Decided in the turn, after the instance caught up (so its class is known) and before the action
                    // runs: refused, it changes nothing anywhere. Only a class without get_state keeps every action
                    // (an empty journal says nothing, so a limit below 1 acts as 1).
                    var kept = function.JournalCount;
                    if (!readOnly && leader.KeepsState == false && kept > 0 && kept >= _options.MaxJournalEntries)
                        throw FunctionSpec.JournalFull(name, kept);
                    var reply = await InvokeAsync(function, leader, PolicyMethods.Management,
                        new JsonObject { ["action"] = action, ["data"] = data.DeepClone() }, ct, budget: budget, call: $"management '{action}' of function {name}",
                        checkPolicy: true);
                    // An answer that is no dict fails here, before anything is journalled, as if management had raised.
                    var answer = FunctionSpec.ManagementAnswer(reply, name, action);
                    // A command the policy declares read_only changes nothing that an instance starting later would lack.
                    if (readOnly) return answer;
                    // Journalled before the answer (and before this instance's state is saved with its sequence number),
                    // so an acknowledged action is never lost for the instances that have not applied it yet.
                    var entry = function.Append(action, data);
                    try
                    {
                        await SaveJournalAsync(function, CancellationToken.None);
                    }
                    catch
                    {
                        // The store refused the journal (a full disk): the action is answered as failed, so it must not
                        // stay anywhere. It used to stay in the in-memory journal, which the other instances applied and
                        // this one applied a second time, while a restart knew nothing of it. This instance holds it: it
                        // is read again from the store, and its live instance recreated, before its next call.
                        function.Retract(entry);
                        leader.Loaded = false;
                        await pool.ReleaseAsync(leader.InstanceKey, CancellationToken.None);
                        throw;
                    }
                    leader.AppliedSeq = entry.Seq;
                    function.Seed = leader.State is null ? null : (entry.Seq, leader.Snapshot());
                    return answer;
                }, ct, budget, $"management '{action}' of function {name}", checkPolicy: true);
            }
            finally
            {
                leader.Leave();
            }
            // The other running instances apply it now (their turn catches up), so a later call finds them ready.
            foreach (var replica in replicas.Skip(1))
            {
                replica.Enter();
                try
                {
                    await InTurnAsync(function, replica, () => Task.FromResult(new JsonObject()), ct);
                }
                catch (PolicyGridException e)
                {
                    logger.LogWarning("function {Function} instance #{Index}: {Reason}", name, replica.Index, e.Message);
                }
                finally
                {
                    replica.Leave();
                }
            }
            return answer;
        }
        finally
        {
            function.ManagementGate.Release();
        }
    }

    /// <summary>
    /// Applies, in order, the journal entries this instance has not applied (it started after them, or came back from a
    /// saved state older than them), before its turn runs anything else.
    /// </summary>
    private async Task CatchUpAsync(HostedFunction function, FunctionReplica replica)
    {
        var changed = false;
        var restarts = 0;
        // The journal no longer holds entries this instance lacks: trimming did not wait for it, as it was not running
        // (autoscaling starts it for the first time, or again after stopping it) or never saved a snapshot of its own.
        // It starts from instance #0's state and context, as an instance that cannot apply an entry restarts (below),
        // then applies only the entries after.
        if (replica.AppliedSeq < function.JournalHead && function.NextEntry(replica.AppliedSeq) is var first && first?.Seq != replica.AppliedSeq + 1
            && await LeaderSeedAsync(function, replica, (first?.Seq ?? function.JournalHead + 1) - 1) is { } start)
        {
            await pool.ReleaseAsync(replica.InstanceKey, CancellationToken.None);
            StartFrom(replica, start);
            changed = true;
            logger.LogInformation("function {Function} instance #{Index} starts from instance #{Leader}'s state, which includes management journal entries 1..{Entry}",
                function.Spec.Name, replica.Index, 0, start.Seq);
        }
        while (function.NextEntry(replica.AppliedSeq) is { } entry)
        {
            changed = true;
            try
            {
                if (entry.Seq != replica.AppliedSeq + 1)
                    throw Problems.PolicyError($"journal entries {replica.AppliedSeq + 1}..{entry.Seq - 1} it lacks were compacted away");
                // Not cancelled with the caller (each entry is bounded by CallTimeout): an entry the instance applied
                // but we did not record would be applied twice.
                await InvokeAsync(function, replica, PolicyMethods.Management,
                    new JsonObject { ["action"] = entry.Action, ["data"] = entry.Data.DeepClone() }, CancellationToken.None, replaying: true);
                replica.AppliedSeq = entry.Seq;
            }
            catch (ReplayInterrupted)
            {
                // The instance was dropped part way (see InvokeAsync): the replay starts again from the first entry.
                logger.LogWarning("function {Function} instance #{Index} was recreated while it replayed management '{Action}' (journal entry {Entry}); replaying from the first entry",
                    function.Spec.Name, replica.Index, entry.Action, entry.Seq);
                if (++restarts > MaxReplayRestarts)
                    throw Problems.BackendUnavailable($"function {function.Spec.Name} instance #{replica.Index}: the worker pool dropped its instance " +
                        $"{restarts} times while it replayed its management journal; retry");
            }
            catch (PolicyGridException e)
            {
                // The instance may hold half of what the failed action did: it is dropped either way.
                await pool.ReleaseAsync(replica.InstanceKey, CancellationToken.None);
                if (await LeaderSeedAsync(function, replica, entry.Seq) is { } seed)
                {
                    StartFrom(replica, seed);
                    logger.LogWarning("function {Function} instance #{Index} could not apply management '{Action}' ({Reason}); restarted from instance #{Leader}'s state",
                        function.Spec.Name, replica.Index, entry.Action, e.Message, 0);
                    continue;
                }
                // Recreated from the deployment (no get_state to restore), it replays the whole journal on its next turn.
                if (replica.State is null) replica.AppliedSeq = 0;
                throw new PolicyGridException(e.Status, e.Code,
                    $"function {function.Spec.Name} instance #{replica.Index} could not apply management '{entry.Action}' " +
                    $"(journal entry {entry.Seq}) that the function's other instances have: {e.Message}; it tries again before its next call");
            }
        }
        if (changed) await PersistAsync(replica);
    }

    /// <summary>
    /// A snapshot of instance #0 (context and get_state() state) that includes journal entry <paramref name="seq"/>: the one
    /// right after the newest action, or, once that is gone with a restart of the server, the one #0 last saved.
    /// </summary>
    private async Task<(long Seq, JsonObject Snapshot)?> LeaderSeedAsync(HostedFunction function, FunctionReplica replica, long seq) =>
        function.Seed is { } kept && kept.Seq >= seq ? kept : await LeaderSavedAsync(function, replica, seq);

    private static void StartFrom(FunctionReplica replica, (long Seq, JsonObject Snapshot) seed)
    {
        replica.Context = (JsonObject)seed.Snapshot["context"]!.DeepClone();
        replica.State = (JsonObject)seed.Snapshot["state"]!.DeepClone();
        replica.AppliedSeq = seed.Seq;
    }

    /// <summary>
    /// Instance #0's saved snapshot, when it includes journal entry <paramref name="seq"/> and has get_state() state:
    /// what an instance that cannot apply that entry restarts from once the in-memory seed is gone (a restart of the
    /// server came between the action and this instance's catching up, e.g. it was stopped by autoscaling).
    /// </summary>
    private async Task<(long Seq, JsonObject Snapshot)?> LeaderSavedAsync(HostedFunction function, FunctionReplica replica, long seq)
    {
        if (replica.Index == 0) return null;
        var saved = await contexts.GetAsync(new FunctionReplica(function.Spec.Name, 0).StoreKey, CancellationToken.None);
        var through = saved?["journal_seq"]?.GetValue<long>() ?? 0;
        return saved?["state"] is JsonObject && saved["context"] is JsonObject && through >= seq ? (through, saved) : null;
    }

    private static string JournalKey(string function) => $"function:{function}!journal";

    /// <summary>
    /// Writes the journal without the entries that instance #0's saved snapshot includes and no running instance with a
    /// saved snapshot lacks. An instance that is not running (autoscaling has not started it, or stopped it after a burst,
    /// keeping its saved snapshot) holds nothing back, nor does a running one that never saved a snapshot: when it starts,
    /// an instance the journal lacks entries for starts from #0's snapshot and applies the entries after it (see
    /// <see cref="CatchUpAsync"/>); otherwise it resumes from its own and replays what follows.
    /// </summary>
    private async Task SaveJournalAsync(HostedFunction function, CancellationToken ct)
    {
        var through = long.MaxValue;
        // The instances running now, read at the write: one autoscaling added since the action began counts too.
        foreach (var replica in function.Replicas)
        {
            long? saved = replica.Loaded ? (replica.Saved ? replica.PersistedSeq : null)
                : await contexts.GetAsync(replica.StoreKey, ct) is { } snapshot ? snapshot["journal_seq"]?.GetValue<long>() ?? 0 : null;
            // Instance #0's snapshot is what the others start from, so what it lacks is kept even before it saved one.
            if (saved is null && replica.Index > 0) continue;
            through = Math.Min(through, saved ?? 0);
        }
        function.Compact(through);
        await contexts.SetAsync(JournalKey(function.Spec.Name), function.JournalJson(), null, ct);
    }

    public async Task<bool> RemoveAsync(string name, CancellationToken ct = default)
    {
        await _catalog.WaitAsync(ct);
        try
        {
            var function = _live.TryRemove(name, out var running) ? running : await LoadAsync(name, ct);
            if (function is null) return false;
            await StopAsync(function, forget: true, ct);
            await documents.DeleteAsync(Collection, name, null, ct);
            return true;
        }
        finally
        {
            _catalog.Release();
        }
    }

    public async Task<FunctionHostStatus?> StatusAsync(string name, CancellationToken ct = default)
    {
        if (_live.TryGetValue(name, out var function)) return function.Status();
        return await documents.GetAsync(Collection, name, ct) is null ? null : new FunctionHostStatus(name, 0, 0, 0, 0);
    }

    /// <summary>
    /// Runs <paramref name="work"/> in the replica's turn, then persists what the turn changed. A call whose caller's
    /// <paramref name="budget"/> ran out while it waited for the turn is refused there, before anything changes.
    /// </summary>
    private async Task<JsonObject> InTurnAsync(HostedFunction function, FunctionReplica replica, Func<Task<JsonObject>> work, CancellationToken ct,
        CallBudget? budget = null, string call = "", bool checkPolicy = false)
    {
        await replica.Turn.WaitAsync(ct);
        try
        {
            if (function.Removed) throw NotDeployed(function.Spec.Name);
            budget?.EnsureLeftToStart(call);
            if (checkPolicy) await EnsureNotRetiredAsync(function, call, ct);
            if (!replica.Loaded) await RestoreAsync(replica, ct);
            await CatchUpAsync(function, replica);
            var (context, state, applied) = (replica.Context, replica.State, replica.AppliedSeq);
            JsonObject result;
            try
            {
                result = await work();
            }
            catch (PolicyGridException e) when (e.Code == ErrorCodes.PolicyError)
            {
                // The policy raised (or its get_state did, or it answered no dict) part way through: the live instance may
                // hold what the call changed before that, though nothing of the call is saved or journalled. Dropped, it is
                // recreated on the next call as a restart recreates it, so a failed call leaves no trace there either: from
                // the saved state (set_state), or, with no get_state state to restore, from the deployment with the whole
                // journal replayed (CatchUpAsync) before anything else runs there. The instance of a class without
                // get_state used to be kept: what add_ip appended before it raised stayed live, held by no journal.
                (replica.Context, replica.State) = (context, state);
                await pool.ReleaseAsync(replica.InstanceKey, CancellationToken.None);
                if (state is null) replica.AppliedSeq = 0;
                throw;
            }
            // A call that changed neither context nor state (a stateless policy, a read-only management action) nor applied
            // a journal entry has nothing new to persist: comparing the serialized snapshot saves a store write per call.
            try
            {
                await PersistAsync(replica);
            }
            catch
            {
                // The store refused what the call changed (a full disk): the caller hears the failure, so the call must
                // leave nothing here either. The replica is read again from the store on its next call, and its live
                // instance (which holds what the call did) goes, recreated from the saved state. It used to keep the
                // change in memory: a counter went on from the unsaved count, and back to the saved one after a restart.
                (replica.Context, replica.State, replica.Loaded) = (context, state, false);
                await pool.ReleaseAsync(replica.InstanceKey, CancellationToken.None);
                // Unless the turn journalled a management action (ManageAsync) before the store refused the snapshot: the
                // journal is its durable record, and the instance, read again from its older snapshot, replays it before
                // its next call. Answered 503 ("retry"), it had happened all the same.
                if (replica.AppliedSeq > applied && function.JournalHead >= replica.AppliedSeq)
                {
                    logger.LogWarning("function {Function} instance #{Index}: the store did not take its state after a journalled management action; " +
                        "it replays the action from the journal before its next call", function.Spec.Name, replica.Index);
                    return result;
                }
                throw;
            }
            return result;
        }
        finally
        {
            replica.Turn.Release();
        }
    }

    /// <summary>
    /// A call or management action does not start once the function's policy is retired in this server's registry: the
    /// registry checks before it hands a call over, but a call can then wait long for its turn (behind a slow one, or
    /// other management), and one queued when the policy was retired used to run all the same. A policy this registry
    /// does not hold (deleted, or a node running the snapshot another registry sent) leaves the snapshot running. A
    /// policy whose status cannot be read (the store failing) is not run: the call fails with the store's error, as in
    /// the Dapr functions app (it used to run on, so a retired policy's function ran while its store was failing).
    /// </summary>
    private async Task EnsureNotRetiredAsync(HostedFunction function, string call, CancellationToken ct)
    {
        try
        {
            await policies.GetRunnableAsync(function.Spec.PolicyRuleUri, ct);
        }
        catch (PolicyGridException e) when (e.Status == 410)
        {
            throw Problems.Retired($"function '{function.Spec.Name}' runs policy '{function.Spec.PolicyRuleUri}', which is retired ({call} not run); " +
                "deploy another version under a new function, or set the policy's status back to active");
        }
        catch (PolicyGridException e) when (e.Status == 404)
        {
        }
    }

    private StartCheck PolicyCheckOf(HostedFunction function) =>
        function.PolicyCheck ??= policies.RetiredCheck(function.Spec.PolicyRuleUri, () =>
            $"function '{function.Spec.Name}' runs policy '{function.Spec.PolicyRuleUri}', which was retired while this call waited for a policy worker " +
            "(the policy's workers were busy), so it did not run; deploy another version under a new function, or set the policy's status back to active");

    private async Task PersistAsync(FunctionReplica replica)
    {
        var text = replica.SnapshotText();
        if (text == replica.Persisted && replica.SnapshotSeq == replica.PersistedSeq) return;
        var saved = replica.Snapshot();
        await contexts.SetAsync(replica.StoreKey, saved, null, CancellationToken.None);
        (replica.Persisted, replica.PersistedSeq, replica.Saved) = (text, saved["journal_seq"]!.GetValue<long>(), true);
    }

    // The saved state rides along with every call: if the pool had to recreate the instance (first call after a
    // restart, a crashed worker, an evicted instance) it calls set_state with it before the method. The instance's
    // get_state() comes back in the same worker round trip and becomes the replica's state to persist.
    // A call with its caller's budget (a node's X-PolicyGrid-Timeout-Ms) takes it into the pool: the instance's worker may
    // be busy with another instance's call (replicas and functions of one policy share its workers), and one still
    // waiting there when the budget runs out is not started (504, nothing of it kept).
    // A caller's call or management action (checkPolicy) also takes the function's check of its policy: one that waited
    // there for the worker is not started once the policy is retired meanwhile (410, as at its turn, EnsureNotRetiredAsync).
    private async Task<JsonNode?> InvokeAsync(HostedFunction function, FunctionReplica replica, string method, JsonObject arguments, CancellationToken ct,
        bool replaying = false, CallBudget? budget = null, string? call = null, bool checkPolicy = false)
    {
        var check = checkPolicy ? PolicyCheckOf(function) : null;
        PolicyInvocation Invocation() => new(replica.InstanceKey, function.Load, method, arguments, _options.CallTimeout, replica.State)
            { Budget = budget, Call = call, StartCheck = check, KeepsWarm = true };
        PolicyAnswer answer;
        try
        {
            answer = await pool.InvokeWithStateAsync(Invocation(), ct);
            if (!(answer.Created && !answer.KeepsState && replica.AppliedSeq > 0)) return Take(replica, answer);
        }
        catch (PolicyRaisedOnNewInstanceException e) when (!e.KeepsState && replica.AppliedSeq > 0)
        {
            // The same, where the method raised there: it may have raised only for lack of those actions, and the
            // instance, kept, would answer without them until it was lost again.
        }
        catch (PolicyStateNotRestoredException e)
        {
            // Named as what failed (it read as the method's own error); the saved state stays, and the next call tries again.
            var owner = $"function {function.Spec.Name} (instance #{replica.Index})";
            ManagementJournal.LogCouldNotRestore(logger, owner, e.Message);
            throw new PolicyGridException(e.Status, e.Code, ManagementJournal.CouldNotRestore(owner, e.Message), inner: e);
        }
        if (replaying)
        {
            // Dropped between two entries of a replay: the new instance lacks the entries before this one. Replaying the
            // journal from in here and then going on with the outer replay applied them twice; it starts over instead.
            await pool.ReleaseAsync(replica.InstanceKey, CancellationToken.None);
            replica.AppliedSeq = 0;
            throw new ReplayInterrupted();
        }
        // The pool made this instance anew (its worker was replaced, or it was evicted) from the deployment: with no
        // get_state to restore, it ran the call without the management actions the lost one had applied. That answer
        // and that instance are dropped; a fresh one replays the journal, then the call runs again (so a policy's side
        // effects outside its instance may happen twice) and what it answers or raises there is the answer.
        logger.LogWarning("function {Function} instance #{Index} was recreated without its management actions; replaying them before the call",
            function.Spec.Name, replica.Index);
        await pool.ReleaseAsync(replica.InstanceKey, CancellationToken.None);
        replica.AppliedSeq = 0;
        await CatchUpAsync(function, replica);
        return Take(replica, await pool.InvokeWithStateAsync(Invocation(), ct));
    }

    /// <summary>How often one replay starts over because the pool dropped the instance part way, before the call fails with a 503.</summary>
    private const int MaxReplayRestarts = 3;

    /// <summary>The pool dropped the instance part way through a journal replay (see <see cref="CatchUpAsync"/>).</summary>
    private sealed class ReplayInterrupted : Exception;

    private static JsonNode? Take(FunctionReplica replica, PolicyAnswer answer)
    {
        replica.KeepsState = answer.KeepsState;
        replica.State = answer.State;
        return answer.Value;
    }

    private async Task RestoreAsync(FunctionReplica replica, CancellationToken ct)
    {
        var saved = await contexts.GetAsync(replica.StoreKey, ct);
        replica.Context = saved?["context"] as JsonObject is { } context ? (JsonObject)context.DeepClone() : [];
        replica.State = saved?["state"] as JsonObject is { } state ? (JsonObject)state.DeepClone() : null;
        replica.AppliedSeq = replica.PersistedSeq = saved?["journal_seq"]?.GetValue<long>() ?? 0;
        replica.Persisted = replica.SnapshotText();
        replica.Saved = saved is not null;
        replica.Loaded = true;
    }

    private async Task<HostedFunction> GetAsync(string name, CancellationToken ct)
    {
        if (_live.TryGetValue(name, out var function)) return function;
        await _catalog.WaitAsync(ct);
        try
        {
            if (_live.TryGetValue(name, out function)) return function;
            function = await LoadAsync(name, ct) ?? throw NotDeployed(name);
            for (var i = 0; i < function.Spec.Scale.Initial; i++) function.AddReplica();
            _live[name] = function;
            logger.LogInformation("function {Function} restored with {Replicas} instances", name, function.Replicas.Count);
            return function;
        }
        finally
        {
            _catalog.Release();
        }
    }

    private async Task<HostedFunction?> LoadAsync(string name, CancellationToken ct)
    {
        var stored = await documents.GetAsync(Collection, name, ct);
        if (stored is null) return null;
        var spec = FromJson(stored.Body);
        var function = new HostedFunction(spec, await LoadSpecAsync(spec, ct));
        function.LoadJournal(await contexts.GetAsync(JournalKey(name), ct));
        return function;
    }

    private async Task<PolicyLoadSpec> LoadSpecAsync(FunctionSpec spec, CancellationToken ct)
    {
        var policy = spec.Policy;
        var code = policy["code"]?.GetValue<string>() ?? throw Problems.Validation("function_policy_data.code", "is required");
        // The snapshot carries the code_sha256 its policy recorded (none for policies stored before it existed).
        var expected = PolicyRule.RecordedCodeSha256(policy);
        var bundle = await bundles.GetAsync(code, expected, ct);
        return new PolicyLoadSpec(spec.PolicyRuleUri, bundle,
            policy["policy_settings"] as JsonObject is { } s ? (JsonObject)s.DeepClone() : [],
            policy["policy_parameters"] as JsonObject is { } p ? (JsonObject)p.DeepClone() : []);
    }

    /// <summary>Stops every replica, waiting for calls in their turn to finish; with <paramref name="forget"/> their saved state goes too.</summary>
    private async Task StopAsync(HostedFunction function, bool forget, CancellationToken ct)
    {
        function.Removed = true;
        foreach (var replica in function.Replicas)
            await StopReplicaAsync(replica, forget, ct);
        if (forget)
        {
            await contexts.DeleteAsync(JournalKey(function.Spec.Name), ct);
            // Replicas autoscaling once started and later stopped still have saved state.
            for (var i = function.Replicas.Count; i < Math.Max(function.Spec.Scale.MaxReplicas, function.Spec.Scale.Replicas); i++)
                await contexts.DeleteAsync(new FunctionReplica(function.Spec.Name, i).StoreKey, ct);
        }
    }

    private async Task StopReplicaAsync(FunctionReplica replica, bool forget, CancellationToken ct)
    {
        await replica.Turn.WaitAsync(ct);
        try
        {
            await pool.ReleaseAsync(replica.InstanceKey, ct);
            if (forget) await contexts.DeleteAsync(replica.StoreKey, ct);
        }
        finally
        {
            replica.Turn.Release();
        }
    }

    private void ShrinkIdle()
    {
        var idle = (long)_options.ScaleDownAfterIdle.TotalMilliseconds;
        foreach (var function in _live.Values)
        {
            if (function.ShrinkIfIdle(idle) is not { } replica) continue;
            logger.LogInformation("function {Function} scaled down to {Replicas} instances", function.Spec.Name, function.Replicas.Count);
            _ = StopReplicaAsync(replica, forget: false, CancellationToken.None);
        }
    }

    private static PolicyGridException NotDeployed(string name) => Problems.NotFound($"function '{name}' is not deployed");

    internal static JsonObject ToJson(FunctionSpec spec) => new()
    {
        ["name"] = spec.Name,
        ["policy"] = spec.Policy.DeepClone(),
        ["replicas"] = spec.Scale.Replicas,
        ["autoscale"] = spec.Scale.Autoscale,
        ["min_replicas"] = spec.Scale.MinReplicas,
        ["max_replicas"] = spec.Scale.MaxReplicas,
    };

    internal static FunctionSpec FromJson(JsonObject body) => new(
        body["name"]!.GetValue<string>(),
        (JsonObject)body["policy"]!.DeepClone(),
        new FunctionScale(body["replicas"]!.GetValue<int>(), body["autoscale"]!.GetValue<bool>(),
            body["min_replicas"]!.GetValue<int>(), body["max_replicas"]!.GetValue<int>()));

    /// <summary>Brings back every function this host ran before a restart (instances warm up on their first call).</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // Every function, however many: a function not restored here would come back on its first call only, showing no
        // instances until then. Restoring one changes no document, so the walk sees each once.
        await foreach (var stored in documents.QueryEveryAsync(Collection, cancellationToken))
        {
            try
            {
                await GetAsync(stored.Id, cancellationToken);
            }
            catch (PolicyGridException e)
            {
                logger.LogWarning("function {Function} could not be restored: {Reason}", stored.Id, e.Message);
            }
        }
        var period = TimeSpan.FromMilliseconds(Math.Max(250, _options.ScaleDownAfterIdle.TotalMilliseconds / 4));
        _shrinkTimer = TimeProvider.System.CreateTimer(_ => ShrinkIdle(), null, period, period);
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _shrinkTimer?.Dispose();
        return Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (_shrinkTimer is not null) await _shrinkTimer.DisposeAsync();
        _catalog.Dispose();
    }
}
