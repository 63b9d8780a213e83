using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Python.Runtime;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.Sdk.Client;

namespace PolicyGrid.Sdk.Evaluation;

/// <summary>One loaded policy instance: where eval and management run.</summary>
internal interface IPolicyInstance
{
    /// <summary>Whether <see cref="Eval"/> runs without blocking on I/O (true in-process).</summary>
    bool Synchronous { get; }

    JsonObject Eval(JsonNode? input, JsonObject? parameters);

    ValueTask<JsonObject> EvalAsync(JsonNode? input, JsonObject? parameters, CancellationToken ct);

    /// <param name="readOnly">The policy declares the command <c>read_only</c>: it changes nothing a recreated instance would lack.</param>
    ValueTask<JsonNode?> ManagementAsync(string action, JsonNode? data, bool readOnly, CancellationToken ct);

    /// <summary>
    /// An instance of the same policy made with other <paramref name="parameters"/> (its <c>__init__</c> sees them, and its
    /// <c>eval</c> gets them), sharing this one's context and the lock around it: as an executor makes one per set of parameters,
    /// all on the policy's one context. Made now in-process; in a worker on its first call, as executors make theirs.
    /// </summary>
    IPolicyInstance WithParameters(JsonObject parameters);

    ValueTask ReleaseAsync();
}

/// <summary>
/// The instances one revision keeps for calls giving their own parameters, by their canonical hash, at most
/// <see cref="Capacity"/>: past it the least recently used one goes (the Python SDK keeps as many, and drops the same one).
/// </summary>
internal sealed class ParameterInstances
{
    public const int Capacity = 16;

    private readonly Lock _gate = new();
    private readonly List<(string Key, IPolicyInstance Instance)> _newestLast = [];
    private bool _closed;

    /// <summary>
    /// The instance for <paramref name="key"/>, made from <paramref name="held"/> on first use. <c>Dropped</c>: an instance to
    /// release once this call is done (the one it pushed out, or its own when the revision was swapped out meanwhile).
    /// </summary>
    public (IPolicyInstance Instance, IPolicyInstance? Dropped) For(IPolicyInstance held, string key, JsonObject parameters, CancellationToken ct)
    {
        lock (_gate)
        {
            if (Take(key) is { } known) return (known, null);
        }
        // A call whose token has fired runs no policy code, __init__ included (in-process it runs here, before eval's check).
        ct.ThrowIfCancellationRequested();
        // Outside the lock: an in-process __init__ runs here, and calls with other parameters need not wait for it.
        var made = held.WithParameters(parameters);
        lock (_gate)
        {
            // Another call made one meanwhile: this one was never called (in a worker, never loaded) and goes.
            if (Take(key) is { } known) return (known, null);
            if (_closed) return (made, made);
            IPolicyInstance? dropped = null;
            if (_newestLast.Count >= Capacity)
            {
                dropped = _newestLast[0].Instance;
                _newestLast.RemoveAt(0);
            }
            _newestLast.Add((key, made));
            return (made, dropped);
        }
    }

    private IPolicyInstance? Take(string key)
    {
        for (var i = _newestLast.Count - 1; i >= 0; i--)
        {
            if (_newestLast[i].Key != key) continue;
            var found = _newestLast[i];
            _newestLast.RemoveAt(i);
            _newestLast.Add(found);
            return found.Instance;
        }
        return null;
    }

    /// <summary>Keeps nothing more (the revision was swapped out, or the evaluator disposed): answers what it held, to release.</summary>
    public IPolicyInstance[] Close()
    {
        lock (_gate)
        {
            _closed = true;
            var held = _newestLast.Select(e => e.Instance).ToArray();
            _newestLast.Clear();
            return held;
        }
    }
}

/// <summary>
/// The policy inside this process (embedded CPython). Fastest; no deadline or memory cap can be
/// enforced here, and a policy that crashes the interpreter takes the caller's process with it.
/// <para>The evaluator's own instance is the one management commands change. One that failed part way may have left half of
/// itself in the instance (an address appended before the check that raised), which no command that succeeded holds: the
/// instance is dropped, and the next call rebuilds it from <c>__init__</c>, then <c>set_state</c> of the <c>get_state()</c>
/// the last command that succeeded left (a class with <c>get_state</c>), else those commands replayed in order (the journal),
/// as WorkerProcess mode and Type 4 rebuild theirs. It used to be kept, so a command that failed could still take effect.</para>
/// </summary>
#pragma warning disable CA1001 // the semaphore holds no wait handle (nothing waits on AvailableWaitHandle) and is shared with the next revision's instance
internal sealed class InProcessPolicy : IPolicyInstance
{
    // The Python instance and its methods: replaced together when the instance is rebuilt (under _calls).
    private PyObject _instance;
    private PyObject _eval;
    private PyObject _management;
    private PyObject _rollback;
    private bool _keepsState; // its class has get_state

    // Calls on one instance run one at a time, as the servers run calls sharing a context key: the GIL
    // alone does not do that, since a policy that sleeps or does I/O releases it in the middle of eval
    // and another thread's call would then read and write the same context.
    // An instance loaded for a newer revision takes over its predecessor's lock too: a call that captured the
    // old instance just before the swap may still be running on the same context.
    // A semaphore rather than a Lock so that a call waiting behind a long one ends when its token fires, as in
    // WorkerProcess mode; it used to wait the long call out and then run the policy anyway.
    private readonly SemaphoreSlim _calls;
    private readonly PyObject _context;

    private readonly string _ruleId;

    // What WithParameters loads another instance from, and what a rebuild loads this one from again.
    private readonly string? _library;
    private readonly BundleDirectory _bundle;
    private readonly JsonObject _settings;
    private readonly JsonObject _parameters;
    private readonly ILogger _logger; // the evaluator's: a rebuild that fails is logged there, as WorkerProcess mode logs it

    // What rebuilds the instance (management reaches the evaluator's own instance only; a new revision's starts afresh, as a
    // redeployed function). Read and changed under _calls.
    private readonly int _maxJournalEntries;
    private readonly List<ManagementJournalEntry> _journal = []; // a class without get_state: the commands that succeeded
    private string? _stateJson; // a class with get_state: its answer after the last command (null: none yet, or None)
    private bool _rebuildDue;

    private InProcessPolicy(PyObject instance, SemaphoreSlim calls, string ruleId, string? library, BundleDirectory bundle, JsonObject settings,
        JsonObject parameters, int maxJournalEntries, ILogger logger)
    {
        _ruleId = ruleId;
        _logger = logger;
        _library = library;
        _bundle = bundle;
        _settings = settings;
        _parameters = parameters;
        _maxJournalEntries = maxJournalEntries;
        _context = instance.GetAttr("context");
        _calls = calls;
        Take(instance);
    }

    public bool Synchronous => true;

    private string Owner => $"policy {_ruleId} (LocalPolicyEvaluator, InProcess)";

    /// <summary>Loads the policy; with a <paramref name="predecessor"/> (an update, or <see cref="WithParameters"/>), its context
    /// carries over, as on the servers.</summary>
    public static InProcessPolicy Load(string? library, string ruleId, BundleDirectory bundle, JsonObject settings, JsonObject parameters,
        int maxJournalEntries, ILogger logger, InProcessPolicy? predecessor = null)
    {
        var host = EmbeddedPython.Host(library);
        using (Py.GIL())
        {
            var instance = Made(host, ruleId, bundle, settings, parameters, predecessor?._context);
            return new InProcessPolicy(instance, predecessor?._calls ?? new SemaphoreSlim(1, 1), ruleId, library, bundle, settings, parameters,
                maxJournalEntries, logger);
        }
    }

    // A new Python instance from the load spec, sharing the context cell of those before it (under the GIL).
    private static PyObject Made(PyObject host, string ruleId, BundleDirectory bundle, JsonObject settings, JsonObject parameters, PyObject? context)
    {
        try
        {
            using var load = host.GetAttr("load");
            using var name = new PyString($"_policygrid_bundle_{bundle.Sha256[..20]}");
            using var functionPy = new PyString(Path.Combine(bundle.Root, "code", "function.py"));
            using var codeDir = new PyString(Path.Combine(bundle.Root, "code"));
            using var rule = new PyString(ruleId);
            using var settingsJson = new PyString(settings.ToJsonString());
            using var parametersJson = new PyString(parameters.ToJsonString());
            return context is null
                ? load.Invoke(name, functionPy, codeDir, rule, settingsJson, parametersJson)
                : load.Invoke(name, functionPy, codeDir, rule, settingsJson, parametersJson, context);
        }
        catch (PythonException e)
        {
            throw EmbeddedPython.CannotLoad(e, ruleId);
        }
    }

    // Under the GIL.
    [MemberNotNull(nameof(_instance), nameof(_eval), nameof(_management), nameof(_rollback))]
    private void Take(PyObject instance)
    {
        _instance = instance;
        _eval = instance.GetAttr("eval");
        _management = instance.GetAttr("management");
        _rollback = instance.GetAttr("rollback");
        using var keepsState = instance.GetAttr("keeps_state");
        _keepsState = keepsState.IsTrue();
    }

    /// <summary>
    /// Makes the instance again after a management command failed on it (under _calls): <c>__init__</c>, then the state or
    /// the journal. One that fails throws naming what failed and stays due: no call runs on an instance without the commands
    /// that succeeded.
    /// </summary>
    private void Rebuild()
    {
        var host = EmbeddedPython.Host(_library);
        using (Py.GIL())
        {
            var fresh = Made(host, _ruleId, _bundle, _settings, _parameters, _context);
            try
            {
                if (_stateJson is not null)
                {
                    using var restore = fresh.GetAttr("restore");
                    using var state = new PyString(_stateJson);
                    try
                    {
                        restore.Invoke(state).Dispose();
                    }
                    catch (PythonException e)
                    {
                        var reason = EmbeddedPython.PolicyError(e).Reason;
                        ManagementJournal.LogCouldNotRestore(_logger, Owner, reason);
                        throw new PolicyGridApiException(422, "policy_error", ManagementJournal.CouldNotRestore(Owner, reason), null, e);
                    }
                }
                using var management = fresh.GetAttr("management");
                for (var i = 0; i < _journal.Count; i++)
                {
                    try
                    {
                        using var action = new PyString(_journal[i].Action);
                        using var data = new PyString(_journal[i].DataJson);
                        management.Invoke(action, data).Dispose();
                    }
                    catch (PythonException e)
                    {
                        var reason = EmbeddedPython.PolicyError(e).Reason;
                        ManagementJournal.LogCouldNotReplay(_logger, Owner, _journal[i].Action, i + 1, _journal.Count, reason);
                        throw new PolicyGridApiException(422, "policy_error",
                            ManagementJournal.CouldNotReplay(Owner, _journal[i].Action, i + 1, _journal.Count, reason), null, e);
                    }
                }
            }
            catch
            {
                fresh.Dispose();
                throw;
            }
            foreach (var old in (PyObject[])[_instance, _eval, _management, _rollback]) old.Dispose();
            Take(fresh);
        }
        _rebuildDue = false;
    }

    public JsonObject Eval(JsonNode? input, JsonObject? parameters) => Eval(input, parameters, CancellationToken.None);

    private JsonObject Eval(JsonNode? input, JsonObject? parameters, CancellationToken ct)
    {
        var inputJson = input?.ToJsonString() ?? "null";
        // A call whose token has fired, before or while it waits for the one running, does not run the policy.
        _calls.Wait(ct);
        try
        {
            if (_rebuildDue) Rebuild();
            string resultJson;
            using (Py.GIL())
            {
                try
                {
                    using var arg = new PyString(inputJson);
                    if (parameters is null)
                    {
                        using var result = _eval.Invoke(arg);
                        resultJson = result.ToString()!; // str() of a str is itself: cheaper than the converter
                    }
                    else
                    {
                        using var p = new PyString(parameters.ToJsonString());
                        using var result = _eval.Invoke(arg, p);
                        resultJson = result.ToString()!; // str() of a str is itself: cheaper than the converter
                    }
                }
                catch (PythonException e)
                {
                    throw EmbeddedPython.PolicyError(e);
                }
            }
            var (answer, problem) = PolicyAnswer.Read(resultJson);
            if (problem is null && answer is JsonObject taken) return taken;
            // As on the servers, a call whose answer cannot be taken saves nothing of the context it left. Still under
            // the instance's lock: no other call has run since.
            using (Py.GIL()) _rollback.Invoke().Dispose();
            throw new PolicyGridApiException(422, "policy_error", problem ?? $"eval of {_ruleId} returned {JsonText.Described(answer)}, not a dict");
        }
        finally
        {
            _calls.Release();
        }
    }

    // Once the policy runs it cannot be stopped (it is this process's own thread): the token counts until then.
    public ValueTask<JsonObject> EvalAsync(JsonNode? input, JsonObject? parameters, CancellationToken ct) =>
        ValueTask.FromResult(Eval(input, parameters, ct));

    public ValueTask<JsonNode?> ManagementAsync(string action, JsonNode? data, bool readOnly, CancellationToken ct)
    {
        var dataJson = data?.ToJsonString() ?? "{}";
        _calls.Wait(ct);
        try
        {
            var journalled = !readOnly && !_keepsState;
            // Refused before it runs, as WorkerProcess mode and a Type 4 function refuse it: the journal rebuilds the instance
            // after a command that raises, and it would lack this one. Before a rebuild too, as they refuse it before their
            // replay: a rebuild that fails used to answer its 422 here instead.
            if (journalled && _journal.Count >= _maxJournalEntries) throw ManagementJournalLimit.Reached(_ruleId, _journal.Count);
            if (_rebuildDue) Rebuild();
            try
            {
                var (answer, state) = Managed(action, dataJson);
                if (_keepsState)
                {
                    _stateJson = state; // holds every command so far: nothing to replay
                    _journal.Clear();
                }
                else if (journalled)
                {
                    _journal.Add(new ManagementJournalEntry(action, dataJson));
                }
                return ValueTask.FromResult<JsonNode?>(answer);
            }
            catch
            {
                // Whatever failed it (it raised, its get_state() raised, its answer has no JSON form), the instance may hold
                // part of it: the next call rebuilds it from the commands that succeeded.
                _rebuildDue = true;
                throw;
            }
        }
        finally
        {
            _calls.Release();
        }
    }

    // The command's answer and, for a class with get_state, its get_state() right after it, taken in the same call.
    private (JsonObject Answer, string? State) Managed(string action, string dataJson)
    {
        string resultJson;
        string? state = null;
        using (Py.GIL())
        {
            try
            {
                using var a = new PyString(action);
                using var d = new PyString(dataJson);
                using var result = _management.Invoke(a, d);
                resultJson = result.ToString()!; // str() of a str is itself: cheaper than the converter
                if (_keepsState)
                {
                    using var taken = _instance.GetAttr("state");
                    state = taken.IsNone() ? null : taken.ToString();
                }
            }
            catch (PythonException e)
            {
                throw EmbeddedPython.PolicyError(e);
            }
        }
        // The rebuild hands set_state() what get_state() answered, and the servers keep only a dict to hand back. The JSON
        // text of a dict starts with its brace: only another answer is read, to be named.
        if (state is not null && !state.StartsWith('{'))
            throw new PolicyGridApiException(422, "policy_error", $"get_state() after management answered {JsonText.Described(JsonNode.Parse(state))}, not a dict");
        var (answer, problem) = PolicyAnswer.Read(resultJson);
        return (problem is null ? PolicyAnswer.ManagementResult(answer, _ruleId) : throw new PolicyGridApiException(422, "policy_error", problem), state);
    }

    public IPolicyInstance WithParameters(JsonObject parameters) =>
        Load(_library, _ruleId, _bundle, _settings, parameters, _maxJournalEntries, _logger, this);

    // The Python objects are released by pythonnet's finalizer: a call that captured this instance
    // just before an update swapped it out may still be using them.
    public ValueTask ReleaseAsync() => ValueTask.CompletedTask;
}
#pragma warning restore CA1001

/// <summary>
/// The policy in a separate worker process from the runtime's pool: a crash boundary, with the
/// pool's deadline, memory and process limits. Context is kept here and travels with each call.
/// <para>The evaluator's own instance (<see cref="Journalled"/>) is the one management commands change, and the pool may
/// replace it (its worker crashed, overran its deadline or memory, was recycled): as a Type 4 function's instance, it is
/// rebuilt before the next call runs anything, with <c>set_state</c> of the <c>get_state()</c> its last management command
/// left when the class has one, else by replaying, in order, the management commands that succeeded on it
/// (<see cref="ManagementJournal"/>). It used to come back as <c>__init__</c> made it, silently.</para>
/// </summary>
#pragma warning disable CA1001 // the semaphore holds no wait handle; a call racing an update's swap may still use it
internal sealed class WorkerProcessPolicy : IPolicyInstance
{
    private readonly PythonWorkerPool _pool;
    private readonly PolicyLoadSpec _load;
    private readonly TimeSpan _deadline;
    private readonly string _key;

    // Shared with the instance this one replaces on an update: the context carries over (as on the servers), and
    // a call still running on the old instance finishes before the first one here reads the context.
    private readonly SharedContext _shared;
    private SemaphoreSlim _serial => _shared.Serial;

    // The evaluator's own instance only (null for those made for a call's parameters, which management never reaches and
    // the pool makes again from their spec): what rebuilds it when the pool recreates it.
    private readonly ManagementJournal? _journal;
    private readonly int _maxJournalEntries;
    private JsonObject? _state; // its class's get_state() after the last management command (null: none yet, or it has none)
    private bool? _keepsState; // whether its class has get_state, as the last command's answer said (null before one)

    /// <summary>The evaluator's own instance: pinned in its worker, and rebuilt as it was when the pool recreates it.</summary>
    public static WorkerProcessPolicy Journalled(PythonWorkerPool pool, PolicyLoadSpec load, TimeSpan deadline, int maxJournalEntries, ILogger logger,
        WorkerProcessPolicy? predecessor) =>
        new(pool, load with { Pinned = true }, deadline, predecessor, maxJournalEntries, logger);

    private WorkerProcessPolicy(PythonWorkerPool pool, PolicyLoadSpec load, TimeSpan deadline, WorkerProcessPolicy? predecessor,
        int maxJournalEntries = 0, ILogger? logger = null)
    {
        _pool = pool;
        _load = load;
        _deadline = deadline;
        _key = $"sdk:{load.RuleId}:{Guid.NewGuid():N}";
        _shared = predecessor?._shared ?? new SharedContext();
        _maxJournalEntries = maxJournalEntries;
        // An update's instance starts without its predecessor's journal: as a redeployed function, from the new revision.
        if (logger is not null) _journal = new ManagementJournal(pool, _key, () => Owner, logger);
    }

    private string Owner => $"policy {_load.RuleId} (LocalPolicyEvaluator, WorkerProcess)";

    private JsonObject _context
    {
        get => _shared.Value;
        set => _shared.Value = value;
    }

    private sealed class SharedContext
    {
        public readonly SemaphoreSlim Serial = new(1, 1);
        public JsonObject Value = [];
    }

    public bool Synchronous => false;

    public JsonObject Eval(JsonNode? input, JsonObject? parameters) =>
        EvalAsync(input, parameters, CancellationToken.None).AsTask().GetAwaiter().GetResult();

    public async ValueTask<JsonObject> EvalAsync(JsonNode? input, JsonObject? parameters, CancellationToken ct)
    {
        // Context is read and written by each call: calls on one evaluator are serialized.
        await _serial.WaitAsync(ct);
        try
        {
            var arguments = new JsonObject
            {
                ["input_data"] = input?.DeepClone(),
                ["context"] = _context.DeepClone(),
            };
            // Without an override, eval gets the parameters the worker keeps with the instance.
            if (parameters is not null) arguments["parameters"] = parameters.DeepClone();
            var answer = await Invoke(PolicyMethods.Eval, arguments, ct);
            // As on the servers, a call answering no dict saves nothing of the context it left.
            if (answer?["context"] is JsonObject context && answer["result"] is JsonObject) _context = (JsonObject)context.DeepClone();
            return answer?["result"] is JsonObject result
                ? (JsonObject)result.DeepClone()
                : throw new PolicyGridApiException(422, "policy_error", $"eval of {_load.RuleId} returned {JsonText.Described(answer?["result"])}, not a dict");
        }
        finally
        {
            _serial.Release();
        }
    }

    public async ValueTask<JsonNode?> ManagementAsync(string action, JsonNode? data, bool readOnly, CancellationToken ct)
    {
        await _serial.WaitAsync(ct);
        try
        {
            var journal = _journal;
            // Refused before it runs, as a Type 4 function refuses it: past the limit the action would live only on an instance
            // that a replaced worker loses (an empty journal says nothing, so a limit below 1 would act as 1).
            if (journal is not null && !readOnly && _keepsState == false && journal.Count > 0 && journal.Count >= _maxJournalEntries)
                throw ManagementJournalLimit.Reached(_load.RuleId, journal.Count);
            var payload = (JsonObject?)data?.DeepClone() ?? [];
            var stateBefore = _state;
            var value = await Invoke(PolicyMethods.Management, new JsonObject { ["action"] = action, ["data"] = payload.DeepClone() }, ct);
            JsonObject answer;
            try
            {
                answer = PolicyAnswer.ManagementResult(value?.DeepClone(), _load.RuleId);
            }
            catch (PolicyGridApiException) when (journal is not null)
            {
                // A command answering no dict failed, as one that raised: nothing of it is kept, in the instance or its state.
                _state = stateBefore;
                await journal.DropInstanceAsync();
                throw;
            }
            // A class with get_state has every command in the state taken after it: nothing to replay.
            if (_keepsState == true) journal?.Clear();
            else if (!readOnly) journal?.Add(action, payload);
            return answer;
        }
        finally
        {
            _serial.Release();
        }
    }

    private async Task<JsonNode?> Invoke(string method, JsonObject arguments, CancellationToken ct)
    {
        try
        {
            // Its management commands change the instance: an idle stop would lose them (IdleStopAfter).
            if (_journal is not { } journal)
                return await _pool.InvokeAsync(new PolicyInvocation(_key, _load, method, arguments, _deadline) { KeepsWarm = true }, ct);
            try
            {
                // Each journal entry runs to its end whatever the caller's token does: one applied but not seen so would be
                // applied twice when the replay starts over.
                return await journal.RunAsync(() => InvokeKept(journal, method, arguments, replaying: false, ct, takesState: method == PolicyMethods.Management),
                    entry => InvokeKept(journal, PolicyMethods.Management,
                        new JsonObject { ["action"] = entry.Action, ["data"] = JsonNode.Parse(entry.DataJson) }, replaying: true, CancellationToken.None),
                    () => { });
            }
            catch (PolicyGridException e) when (e.Code is ErrorCodes.PolicyCrashed or ErrorCodes.PolicyMemoryLimit or ErrorCodes.PolicyTimeout)
            {
                // Its worker is (or may be) replaced: the next call rebuilds the instance before it runs.
                await journal.DropInstanceAsync();
                throw;
            }
            catch (PolicyGridException e) when (e.Code == ErrorCodes.PolicyError && method == PolicyMethods.Management)
            {
                // A command that raised part way may have left half of itself in the instance, which no journal entry holds:
                // dropped, as Type 4 drops it, the next call rebuilds it from the commands that succeeded. Not after eval,
                // whose changes to the instance are not rebuilt anyway (InvokeKept): a policy that raises for bad input
                // would pay for a rebuild with every such call.
                await journal.DropInstanceAsync();
                throw;
            }
        }
        catch (PolicyGridException e)
        {
            throw new PolicyGridApiException(e.Status, e.Code, e.Message, null, e) { RetryAfterSeconds = e.RetryAfterSeconds };
        }
    }

    // The state the last management command left rides along: when the pool recreates the instance it calls set_state with
    // it first. The instance's get_state() comes back in the same worker round trip (the Type 4 protocol's with_state). Not
    // after eval, unlike Type 4, which persists it: writing the state on every call would cost each call what get_state()
    // answers (about 1 ms for the sample's allowlist of 10,000 addresses), for the rare replaced worker; the commands, which
    // the state holds, are what must survive. Nor after the load: before a command, __init__ makes the same instance.
    private async Task<JsonNode?> InvokeKept(ManagementJournal journal, string method, JsonObject arguments, bool replaying, CancellationToken ct,
        bool takesState = true)
    {
        var answer = await journal.InvokeAsync(new PolicyInvocation(_key, _load, method, arguments, _deadline, _state) { KeepsWarm = true, TakesState = takesState },
            replaying, ct);
        if (!takesState) return answer.Value;
        _keepsState = answer.KeepsState;
        _state = answer.State;
        return answer.Value;
    }

    /// <summary>Loads the instance now, so a policy that cannot load fails at creation, not first use.</summary>
    public async Task WarmAsync(CancellationToken ct) => await Invoke(PolicyMethods.Load, [], ct);

    public IPolicyInstance WithParameters(JsonObject parameters) =>
        new WorkerProcessPolicy(_pool, _load with { Parameters = parameters, Pinned = false }, _deadline, this); // made again from its spec when dropped

    public async ValueTask ReleaseAsync() => await _pool.ReleaseAsync(_key);
}

#pragma warning restore CA1001

/// <summary>The 409 of a management command past <see cref="LocalPolicyEvaluatorOptions.MaxJournalEntries"/>, as a Type 4 function answers it.</summary>
internal static class ManagementJournalLimit
{
    public static PolicyGridApiException Reached(string ruleId, int kept) => new(409, ErrorCodes.Conflict,
        $"policy {ruleId}: {kept} management commands are kept to replay on a recreated instance (the limit, " +
        "LocalPolicyEvaluatorOptions.MaxJournalEntries) because the policy class has no get_state; give it get_state/set_state, declare " +
        "the commands that change nothing read_only in its management_commands_schema, or create a new evaluator to start afresh");
}

/// <summary>What an in-process policy answered, read as the servers read a worker's reply.</summary>
internal static class PolicyAnswer
{
    // As deep as the servers take an answer (their limit counts the worker reply's 3 levels around it), and no key twice:
    // Python writes 1 and "1" (True and "true", None and "null") as one JSON key.
    private static readonly JsonDocumentOptions Strict = new() { MaxDepth = Core.Documents.DocumentDepth.MaxWritten - 3, AllowDuplicateProperties = false };

    /// <summary>The answer, or the servers' words for why it has no JSON form.</summary>
    public static (JsonNode? Answer, string? Problem) Read(string json)
    {
        try
        {
            return (JsonNode.Parse(json, documentOptions: Strict), null);
        }
        catch (JsonException strict)
        {
            return (null, HostFrames.TooDeep(System.Text.Encoding.UTF8.GetBytes(json), Strict)
                ? $"ValueError: the policy answered JSON nested too deep: an answer carries at most {Strict.MaxDepth} levels of objects and arrays"
                : "ValueError: " + HostFrames.CollidingKeys(strict));
        }
    }

    /// <summary>A management command's answer as the servers give it: None is an empty dict, anything but a dict a policy error.</summary>
    public static JsonObject ManagementResult(JsonNode? answer, string ruleId) => answer switch
    {
        null => [],
        JsonObject result => result,
        _ => throw new PolicyGridApiException(422, "policy_error", $"management of {ruleId} returned {JsonText.Described(answer)}, not a dict"),
    };
}

internal static class JsonText
{
    /// <summary>A policy's answer that is no dict, in the servers' words ("None", "a list").</summary>
    public static string Described(JsonNode? node) => node switch
    {
        null => "None",
        JsonArray => "a list",
        JsonValue v => $"a {v.GetValueKind().ToString().ToLowerInvariant()}",
        _ => "a dict",
    };

    public static string Kind(JsonNode? node) => node?.GetValueKind() switch
    {
        null or JsonValueKind.Null => "null",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        _ => "a boolean",
    };

    /// <summary>
    /// Refuses <c>input_data</c> or management <c>data</c> that is no JSON object with the 400 executors answer for it
    /// ("must be a JSON object, not a JSON array"). Local modes handed it to the policy, which then failed as a 422.
    /// <paramref name="nullIsEmpty"/>: management data may be left out (it is then <c>{}</c>); input_data may not.
    /// </summary>
    public static void EnsureObject(JsonNode? node, string path, bool nullIsEmpty)
    {
        var kind = node?.GetValueKind() ?? JsonValueKind.Null;
        if (kind == JsonValueKind.Object || (kind == JsonValueKind.Null && nullIsEmpty)) return;
        var why = kind switch
        {
            JsonValueKind.Null => "is required (a JSON object)",
            JsonValueKind.Array => "must be a JSON object, not a JSON array",
            JsonValueKind.String => "must be a JSON object, not a JSON string",
            JsonValueKind.Number => "must be a JSON object, not a JSON number",
            _ => "must be a JSON object, not a JSON boolean",
        };
        throw new PolicyGridApiException(400, "validation_failed", $"{path}: {why}", new JsonArray(new JsonObject { ["path"] = path, ["message"] = why }));
    }

    /// <summary>How deeply a value inside a request body (input_data, parameters, management data) may nest: a server takes
    /// a body of <see cref="Core.Documents.DocumentDepth.Max"/> levels, the body counting as one.</summary>
    public const int MaxValueDepth = Core.Documents.DocumentDepth.Max - 1;

    /// <summary>
    /// Refuses a value JSON cannot carry (a NaN or infinite double or float put into a node by the caller, text holding a lone
    /// surrogate as a value or a key) or a server would refuse (nesting past <see cref="MaxValueDepth"/>) with a 400 naming its
    /// path, as the server would, instead of the serializer's ArgumentException or InvalidOperationException (past 1000
    /// levels) wherever it is written, instead of the writer's U+FFFD for a lone surrogate (the policy or the server saw other
    /// text than the caller gave), and instead of local modes running a policy on input no server takes.
    /// <paramref name="wholeBody"/>: <paramref name="node"/> is a request body, which nests one level more than a value in one.
    /// </summary>
    public static void EnsureJson(JsonNode? node, string path, bool wholeBody = false)
    {
        if (FirstNonJson(node, path, wholeBody ? 0 : 1) is not { } found) return;
        var where = found.Path.Length > 200 ? found.Path[..200] + "…" : found.Path;
        throw new PolicyGridApiException(400, "validation_failed", $"{where}: {found.Why}",
            new JsonArray(new JsonObject { ["path"] = where, ["message"] = found.Why }));
    }

    private static (string Path, string Why)? FirstNonJson(JsonNode? node, string path, int depth)
    {
        switch (node)
        {
            case JsonObject or JsonArray when depth > MaxValueDepth:
                return (path, $"nests deeper than {MaxValueDepth} levels of objects and arrays (the server refuses it)");
            case JsonObject o:
                // Keys first, so that no path below is built from a key that cannot be written.
                try
                {
                    foreach (var (key, _) in o)
                        if (LoneSurrogate(key) is { } badKey) return (path, $"key {badKey} is a lone surrogate, which no JSON text can hold");
                }
                catch (InvalidOperationException)
                {
                    return (path, $"a key {EscapedLoneSurrogate}");
                }
                foreach (var (key, item) in o)
                    if (FirstNonJson(item, $"{path}.{key}", depth + 1) is { } found) return found;
                return null;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++)
                    if (FirstNonJson(a[i], $"{path}[{i}]", depth + 1) is { } found) return found;
                return null;
            case JsonValue v when TextProblem(v) is { } why:
                return (path, why);
            case JsonValue v when v.TryGetValue<double>(out var d) && !double.IsFinite(d):
                return (path, "NaN and infinity are not JSON numbers");
            case JsonValue v when v.TryGetValue<float>(out var f) && !float.IsFinite(f):
                return (path, "NaN and infinity are not JSON numbers");
            default:
                return null;
        }
    }

    private static string? TextProblem(JsonValue value)
    {
        try
        {
            var bad = value.TryGetValue<string>(out var text) ? LoneSurrogate(text)
                : value.TryGetValue<char>(out var c) && char.IsSurrogate(c) ? Escaped(c) : null;
            return bad is null ? null : $"{bad} is a lone surrogate, which no JSON text can hold";
        }
        catch (InvalidOperationException)
        {
            return EscapedLoneSurrogate;
        }
    }

    // Parsed JSON text (JsonNode.Parse) whose string holds an escaped lone surrogate ("\ud800"): it cannot even be read as text.
    private const string EscapedLoneSurrogate = "holds an escaped lone surrogate (\\ud800-\\udfff without its pair), which no JSON text can hold";

    /// <summary>The first lone surrogate of <paramref name="text"/> as Python writes it (<c>'\ud800'</c>), or null.</summary>
    private static string? LoneSurrogate(string text)
    {
        var at = text.AsSpan().IndexOfAnyInRange('\ud800', '\udfff'); // vectorized: most text holds no surrogate at all
        if (at < 0) return null;
        for (var i = at; i < text.Length; i++)
        {
            if (!char.IsSurrogate(text[i])) continue;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            return Escaped(text[i]);
        }
        return null;
    }

    private static string Escaped(char c) => $"'\\u{(int)c:x4}'";
}
