using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Templates;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.Sdk.Client;

namespace PolicyGrid.Sdk.Evaluation;

/// <summary>
/// Type 1 evaluation: the methods of the Python SDK's <c>LocalPolicyEvaluator</c>
/// (<see cref="ExecutePolicyRule"/>, <see cref="ExecuteManagementCommand"/>).
/// <para>Local mode fetches the policy document and its bundle once, verifies and unpacks the bundle, and
/// runs the policy in this process (embedded CPython) or in a worker process. Every
/// <see cref="LocalPolicyEvaluatorOptions.RevalidateInterval"/> a call starts a background re-read of the
/// document's revision; calls keep using the held revision until that finishes, so an update or a
/// retirement arrives within about one interval without a busy evaluator's calls waiting on the network
/// (after a quiet spell of over two intervals, the first call does wait for the re-read). A revision the
/// registry names but that cannot be loaded makes calls raise. When the registry cannot be reached, the
/// held policy keeps being served for up to <see cref="LocalPolicyEvaluatorOptions.MaxStaleness"/>, then
/// calls raise 503; with nothing held, creation fails.</para>
/// <para>Remote mode sends every call to an executor's <c>execute_policy</c> and fails closed.</para>
/// </summary>
public sealed class LocalPolicyEvaluator : IAsyncDisposable
{
    private readonly PolicyGridClient _client;
    private readonly LocalPolicyEvaluatorOptions _options;
    private readonly BundleFetcher? _bundles;
    private readonly PythonWorkerPool? _pool;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _reload = new(1, 1);
    private int _disposed;
    private readonly JsonObject _parameterOverrides;
    private readonly JsonObject _settingOverrides;
    private volatile Held? _held; // swapped whole by revalidation; calls read it without a lock
    private long _nextCheck;
    private long _confirmedAt; // when the registry last confirmed the held revision (Environment.TickCount64)
    private readonly Lock _revalidationGate = new();
    private Task? _revalidation;
    private volatile string? _lastRevalidationError; // why the last re-read could not reach the registry; null once one does

    private LocalPolicyEvaluator(PolicyGridClient client, LocalPolicyEvaluatorOptions options, PythonWorkerPool? pool)
    {
        _client = client;
        _options = options;
        _pool = pool;
        _logger = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger<LocalPolicyEvaluator>();
        _parameterOverrides = (JsonObject?)options.Parameters?.DeepClone() ?? [];
        _settingOverrides = (JsonObject?)options.Settings?.DeepClone() ?? [];
        if (options.Mode == EvaluationMode.Local)
            _bundles = new BundleFetcher(client, options.CacheDirectory ?? BundleFetcher.ProcessCacheDirectory(), options.UnpackLimits);
    }

    public string PolicyRuleUri => _options.PolicyRuleUri;
    public EvaluationMode Mode => _options.Mode;

    /// <summary>The policy document held (local mode), as last read from the registry.</summary>
    public JsonObject? Policy => (JsonObject?)_held?.Document.DeepClone();

    /// <summary>
    /// Whether the held policy is <c>deprecated</c> (it still runs; plan a move to its successor); in remote mode, whether the
    /// executor's last answer said so (its <c>Deprecation</c> header). The Python SDK
    /// raises a DeprecationWarning for the same; here it is this flag and one logged warning per revision.
    /// </summary>
    public bool Deprecated => _options.Mode == EvaluationMode.Remote ? _remoteDeprecated : _held is { Status: "deprecated", Gone: null };

    // Remote mode: whether the executor's last answer carried a Deprecation header (it holds no document of its own).
    private volatile bool _remoteDeprecated;

    private JsonNode? Remote(PolicyGridResponse response)
    {
        if (response.Deprecated && !_remoteDeprecated)
            _logger.LogWarning("policy {Policy} is deprecated (the executor said so)", _options.PolicyRuleUri);
        _remoteDeprecated = response.Deprecated;
        return response.Data;
    }

    /// <summary>The revision (ETag) of the held document.</summary>
    public string? Revision => _held?.Revision;

    /// <summary>
    /// Creates an evaluator. In local mode this reads the policy and loads it now, so an unknown
    /// policy, a bad bundle or an unreachable registry fails here rather than on the first call.
    /// </summary>
    public static async Task<LocalPolicyEvaluator> CreateAsync(PolicyGridClient client, LocalPolicyEvaluatorOptions options, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrWhiteSpace(options.PolicyRuleUri))
            throw new ArgumentException("PolicyRuleUri must name a policy, e.g. ip_allowlist:1.0-beta", nameof(options));
        if (!Enum.IsDefined(options.Mode)) throw new ArgumentException($"Mode {(int)options.Mode} is neither Local nor Remote", nameof(options));
        if (options.Mode == EvaluationMode.Remote && string.IsNullOrWhiteSpace(options.ExecutorId))
            throw new ArgumentException("Remote mode needs ExecutorId, the executor to call (e.g. local)", nameof(options));
        if (options.RevalidateInterval < TimeSpan.Zero)
            throw new ArgumentException($"RevalidateInterval must be zero or more, not {options.RevalidateInterval}", nameof(options));
        if (options.MaxJournalEntries < 1)
            throw new ArgumentException($"MaxJournalEntries must be 1 or more (management commands kept to rebuild the instance), not {options.MaxJournalEntries}", nameof(options));
        if (options.MaxStaleness < TimeSpan.Zero && options.MaxStaleness != Timeout.InfiniteTimeSpan)
            throw new ArgumentException($"MaxStaleness must be zero or more (or Timeout.InfiniteTimeSpan), not {options.MaxStaleness}", nameof(options));
        // pythonnet needs code generated at run time: without it (a native AOT app) the first load threw pythonnet's own
        // PlatformNotSupportedException from deep inside, after the policy and its bundle had been fetched.
        if (options.Mode == EvaluationMode.Local && options.Isolation == LocalIsolation.InProcess && !options.DynamicCodeSupported())
            throw new PlatformNotSupportedException(InProcessNeedsDynamicCode);
        // A timer takes at most int.MaxValue ms: past it every call failed inside the worker pool ("failed a batch").
        if (options.Mode == EvaluationMode.Local && options.Isolation == LocalIsolation.WorkerProcess
            && (options.CallDeadline <= TimeSpan.Zero || options.CallDeadline.TotalMilliseconds > int.MaxValue))
            throw new ArgumentException($"CallDeadline must be above zero and at most {TimeSpan.FromMilliseconds(int.MaxValue)}, not {options.CallDeadline}", nameof(options));
        // As the calls check theirs: a NaN threw the serializer's ArgumentException here, and a lone surrogate reached the
        // policy (or the executor) as U+FFFD.
        JsonText.EnsureJson(options.Parameters, "parameters");
        JsonText.EnsureJson(options.Settings, "settings");
        PythonWorkerPool? pool = null;
        if (options.Mode == EvaluationMode.Local && options.Isolation == LocalIsolation.WorkerProcess)
        {
            var loggers = options.LoggerFactory ?? NullLoggerFactory.Instance;
            // One policy per evaluator: nothing to isolate it from, so its calls use the worker StartAsync starts.
            pool = new PythonWorkerPool(options.WorkerPool ?? new WorkerPoolOptions { Workers = 1, IsolatePolicies = false }, loggers.CreateLogger<PythonWorkerPool>());
            await pool.StartAsync(ct);
        }
        var evaluator = new LocalPolicyEvaluator(client, options, pool);
        try
        {
            if (options.Mode == EvaluationMode.Local) await evaluator.RevalidateAsync(ct);
            return evaluator;
        }
        catch
        {
            await evaluator.DisposeAsync();
            throw;
        }
    }

    internal const string InProcessNeedsDynamicCode =
        "Isolation = LocalIsolation.InProcess (the default of Mode = EvaluationMode.Local) embeds CPython through pythonnet, which needs " +
        "code generated at run time, and this process has none (RuntimeFeature.IsDynamicCodeSupported is false, as in an app published with " +
        "PublishAot=true). Use Isolation = LocalIsolation.WorkerProcess (the policy runs in a Python worker process, with a deadline and " +
        "memory cap) or Mode = EvaluationMode.Remote (an executor runs it)";

    // ------------------------------------------------------------------ calls

    /// <summary>Runs the policy's <c>eval</c> on <paramref name="inputData"/>; answers the dict it returned.</summary>
    public JsonObject ExecutePolicyRule(JsonNode? inputData, JsonObject? parameters = null)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        JsonText.EnsureJson(inputData, "input_data");
        JsonText.EnsureObject(inputData, "input_data", nullIsEmpty: false);
        JsonText.EnsureJson(parameters, "parameters");
        if (_options.Mode == EvaluationMode.Remote || _held?.Instance is not { Synchronous: true })
            return ExecutePolicyRuleAsync(inputData, parameters).GetAwaiter().GetResult();
        var (instance, effective, dropped) = Prepare(inputData, parameters);
        if (dropped is null) return instance.Eval(inputData, effective);
        try
        {
            return instance.Eval(inputData, effective);
        }
        finally
        {
            dropped.ReleaseAsync().AsTask().GetAwaiter().GetResult(); // in-process: nothing to wait for
        }
    }

    public async Task<JsonObject> ExecutePolicyRuleAsync(JsonNode? inputData, JsonObject? parameters = null, CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        JsonText.EnsureJson(inputData, "input_data");
        JsonText.EnsureObject(inputData, "input_data", nullIsEmpty: false);
        JsonText.EnsureJson(parameters, "parameters");
        if (_options.Mode == EvaluationMode.Remote)
        {
            var request = new ExecutePolicyRequest(_options.PolicyRuleUri, inputData)
            {
                Parameters = Merge(_parameterOverrides, parameters),
                Settings = _settingOverrides,
            };
            var answer = Remote(await _client.ExecutePolicyResponseAsync(_options.ExecutorId, request, ct));
            return answer as JsonObject ?? throw new PolicyGridApiException(502, "backend_error", $"execute_policy answered {JsonText.Kind(answer)}, expected the policy's dict");
        }
        var (instance, effective, dropped) = Prepare(inputData, parameters, ct);
        if (dropped is null) return await instance.EvalAsync(inputData, effective, ct);
        try
        {
            return await instance.EvalAsync(inputData, effective, ct);
        }
        finally
        {
            await dropped.ReleaseAsync();
        }
    }

    /// <summary>Runs the policy's <c>management(action, data)</c>: on the instance this evaluator holds (local) or on a fresh one (remote).</summary>
    public JsonNode? ExecuteManagementCommand(string action, JsonNode? data = null) =>
        ExecuteManagementCommandAsync(action, data).GetAwaiter().GetResult();

    public async Task<JsonNode?> ExecuteManagementCommandAsync(string action, JsonNode? data = null, CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (string.IsNullOrWhiteSpace(action)) throw new PolicyGridApiException(400, "validation_failed", "action: must be a non-empty string");
        JsonText.EnsureJson(data, "data");
        JsonText.EnsureObject(data, "data", nullIsEmpty: true);
        if (_options.Mode == EvaluationMode.Remote)
        {
            var request = new ManagementRequest(_options.PolicyRuleUri, action, data) { Parameters = _parameterOverrides, Settings = _settingOverrides };
            return Remote(await _client.ManagementResponseAsync(_options.ExecutorId, request, ct));
        }
        var held = Current(ct);
        var commands = held.Document["management_commands_schema"] as JsonArray;
        try
        {
            // As executors check it, so local and remote agree: an unlisted action or data breaking its schema is a 400.
            ManagementCommands.Ensure(commands, _options.PolicyRuleUri, action, data ?? new JsonObject());
        }
        catch (PolicyGridException e)
        {
            var errors = new JsonArray([.. e.Errors.Select(f => (JsonNode)new JsonObject { ["path"] = f.Path, ["message"] = f.Message })]);
            throw new PolicyGridApiException(e.Status, e.Code, e.Message, errors, e);
        }
        return await held.Instance!.ManagementAsync(action, data, ManagementCommands.IsReadOnly(commands, action), ct);
    }

    /// <summary>The worker processes of a <see cref="LocalIsolation.WorkerProcess"/> evaluator alive now (none otherwise).</summary>
    internal IReadOnlyList<WorkerProcess> LiveWorkers() => _pool?.LiveWorkers() ?? [];

    /// <summary>Re-reads the policy's revision now (and reloads it if it changed) instead of waiting for the interval.</summary>
    public Task RefreshAsync(CancellationToken ct = default) =>
        _options.Mode == EvaluationMode.Local ? RevalidateAsync(ct) : Task.CompletedTask;

    /// <summary>
    /// The instance a call runs on, the parameters to hand its eval (null: those it was made with) and an instance to release
    /// after the call (see <see cref="ParameterInstances.For"/>).
    /// </summary>
    private (IPolicyInstance Instance, JsonObject? Parameters, IPolicyInstance? Dropped) Prepare(JsonNode? input, JsonObject? parameters,
        CancellationToken ct = default)
    {
        var held = Current(ct);
        JsonObject? effective = null;
        if (parameters is { Count: > 0 })
        {
            effective = Merge(held.Parameters, parameters);
            // Named as executors name them ("parameters.limit"), so a bad override reads alike in both modes.
            Ensure(TemplateValidator.Validate(held.ParametersTemplate, effective, "parameters"));
        }
        if (held.InputTemplate.Count > 0) Ensure(TemplateValidator.Validate(held.InputTemplate, input, "input_data"));
        if (effective is null) return (held.Instance!, null, null);
        // An executor makes the policy's instance with the call's merged parameters: the held one was made with the evaluator's,
        // so a policy reading them in __init__ (ip_allowlist's local_allowlist) ignored a call's override locally and applied it
        // remotely. The evaluator's own parameters, given again, stay on the held instance (the one management commands reach).
        var key = CanonicalJson.Sha256(effective);
        if (key == held.ParametersKey) return (held.Instance!, effective, null);
        var (instance, dropped) = held.ByParameters.For(held.Instance!, key, effective, ct);
        return (instance, null, dropped);
    }

    /// <param name="ct">Ends the wait for a re-read after a quiet spell (the re-read itself goes on for later calls).</param>
    private Held Current(CancellationToken ct = default)
    {
        var now = Environment.TickCount64;
        var next = Volatile.Read(ref _nextCheck);
        if (now >= next)
        {
            var revalidation = StartRevalidation(out var alreadyRunning);
            // Background re-reads keep a busy evaluator current without making calls wait. After a quiet spell
            // (no re-read started for over two intervals) the held revision may be long superseded or retired:
            // that call waits for the re-read instead of answering from it. A re-read already in flight is no quiet
            // spell but a slow registry: waiting for it made every call stall up to the client's timeout.
            // The caller's token ends that wait: it used to hold a cancelled call until the re-read ended (up to the client's
            // timeout on a hung registry). The re-read never throws, so Wait throws only for the token.
            if (!alreadyRunning && now - next >= (long)_options.RevalidateInterval.TotalMilliseconds) revalidation.Wait(ct);
        }
        var held = _held ?? throw new PolicyGridApiException(503, "backend_unavailable", $"policy {_options.PolicyRuleUri} is not loaded");
        if (held.Gone is { } gone) throw gone;
        if (held.Status == "retired") throw new PolicyGridApiException(410, "retired", $"policy {_options.PolicyRuleUri} is retired");
        // Only while re-reads fail: with a long RevalidateInterval a revision simply not asked about yet is not stale.
        var unconfirmed = Environment.TickCount64 - Volatile.Read(ref _confirmedAt);
        if (_lastRevalidationError is not null && _options.MaxStaleness != Timeout.InfiniteTimeSpan
            && unconfirmed > (long)_options.MaxStaleness.TotalMilliseconds)
            throw new PolicyGridApiException(503, "backend_unavailable",
                $"policy {_options.PolicyRuleUri}: the registry has not confirmed revision {held.Revision} for {unconfirmed / 1000.0:0.#} s "
                + $"(MaxStaleness {_options.MaxStaleness.TotalSeconds:0.###} s); last re-read: {_lastRevalidationError}");
        return held;
    }

    // ------------------------------------------------------------------ revalidation

    /// <summary>
    /// The re-read in flight, started now if none is: every call that needs one shares it. <paramref name="alreadyRunning"/>:
    /// a re-read (this one, or a <see cref="RefreshAsync"/> it will queue behind) was under way before this call.
    /// </summary>
    private Task StartRevalidation(out bool alreadyRunning)
    {
        lock (_revalidationGate)
        {
            alreadyRunning = true;
            if (_revalidation is { IsCompleted: false } running) return running;
            alreadyRunning = _reload.CurrentCount == 0;
            Volatile.Write(ref _nextCheck, Environment.TickCount64 + (long)_options.RevalidateInterval.TotalMilliseconds);
            return _revalidation = Task.Run(async () =>
            {
                try
                {
                    await RevalidateAsync(CancellationToken.None);
                }
                catch (Exception e)
                {
                    // Held state already says what callers should see (kept, gone or failed); this is for operators.
                    _logger.LogWarning(e, "revalidating policy {Policy} failed", _options.PolicyRuleUri);
                }
            });
        }
    }

    private async Task RevalidateAsync(CancellationToken ct)
    {
        await _reload.WaitAsync(ct);
        try
        {
            Volatile.Write(ref _nextCheck, Environment.TickCount64 + (long)_options.RevalidateInterval.TotalMilliseconds);
            PolicyRevision revision;
            try
            {
                revision = await _client.GetPolicyRevisionAsync(_options.PolicyRuleUri, ct);
            }
            catch (PolicyGridApiException e) when (_held is { Gone: null } && (e is PolicyGridUnreachableException || e.Status >= 500))
            {
                // Local mode keeps serving what it holds while the registry is away (up to MaxStaleness).
                _logger.LogWarning("keeping policy {Policy} (revision {Revision}): {Reason}", _options.PolicyRuleUri, _held.Revision, e.Message);
                _lastRevalidationError = e.Message;
                return;
            }
            catch (PolicyGridApiException e) when (_held is not null && e.Status < 500)
            {
                // The registry answered: the policy is gone or we may no longer read it.
                await Swap(_held with { Gone = e });
                throw;
            }
            var tag = revision.ETag ?? revision.Document["updated_at"]?.ToString() ?? "";
            if (_held is { Gone: null } current && tag.Length > 0 && tag == current.Revision)
            {
                Volatile.Write(ref _confirmedAt, Environment.TickCount64);
                _lastRevalidationError = null;
                return;
            }
            Held loaded;
            try
            {
                loaded = await LoadAsync(revision, tag, ct);
            }
            catch (Exception e) when (_held is not null && e is not OperationCanceledException)
            {
                // The registry names a revision we cannot load (bad bundle, hash mismatch, invalid settings, a
                // policy that fails to start): the one it replaced must not keep answering. Calls raise this
                // until a later re-read loads a good revision.
                var failure = e as PolicyGridApiException
                    ?? new PolicyGridApiException(502, "backend_error", $"loading revision {tag} of {_options.PolicyRuleUri} failed: {e.Message}", null, e);
                await Swap(_held with { Gone = failure });
                if (failure == e) throw;
                throw failure;
            }
            await Swap(loaded);
            Volatile.Write(ref _confirmedAt, Environment.TickCount64);
            _lastRevalidationError = null;
        }
        finally
        {
            _reload.Release();
        }
    }

    private async Task Swap(Held next)
    {
        var previous = _held;
        _held = next;
        if (previous?.Instance is { } old && !ReferenceEquals(old, next.Instance)) await old.ReleaseAsync();
        if (previous is not null && !ReferenceEquals(previous.ByParameters, next.ByParameters))
            foreach (var made in previous.ByParameters.Close()) await made.ReleaseAsync();
    }

    private async Task<Held> LoadAsync(PolicyRevision revision, string tag, CancellationToken ct)
    {
        var document = revision.Document;
        var status = document["status"]?.ToString() is { Length: > 0 } s ? s : "active";
        var settings = Merge(document["policy_settings"] as JsonObject ?? [], _settingOverrides);
        var parameters = Merge(document["policy_parameters"] as JsonObject ?? [], _parameterOverrides);
        var code = document["code"]?.ToString() ?? "";
        var codeSha256 = document["code_sha256"]?.ToString() ?? ""; // absent from documents stored before it existed
        // WorkerProcess: the deadline executors would give a call of this revision (the policy's estimate, unless the caller
        // chose one). It used to be CallDeadline's 5 s always, so a policy declaring 1 s ran 3 s locally and answered 504 remotely.
        var deadline = _options.CallDeadlineGiven ? _options.CallDeadline
            : PolicyRule.TimeoutEstimate(document["resource_estimates"] as JsonObject ?? []) is { } estimate
                ? (estimate.TotalMilliseconds > int.MaxValue ? TimeSpan.FromMilliseconds(int.MaxValue) : estimate)
                : LocalPolicyEvaluatorOptions.DefaultCallDeadline;
        var fingerprint = new JsonArray(code, codeSha256, settings.DeepClone(), parameters.DeepClone(),
            _pool is null ? null : JsonValue.Create(deadline.Ticks)).ToJsonString();
        var parametersTemplate = document["policy_parameters_schema"] as JsonObject ?? [];
        var inputTemplate = document["policy_input_schema"] as JsonObject ?? [];

        IPolicyInstance? instance;
        if (_held is { Gone: null } previous && previous.Fingerprint == fingerprint && (previous.Instance is not null || status == "retired"))
        {
            // Only metadata or status changed: keep the warm instance and its state. A retired revision holds none
            // (nothing was loaded for it), so a policy un-retired after that is loaded here.
            instance = previous.Instance;
        }
        else if (status == "retired")
        {
            instance = null;
        }
        else
        {
            // The stored values passed these templates when registered: what fails here is the evaluator's overrides, named
            // as an executor names them when remote mode sends them ("parameters.limit").
            Ensure([.. TemplateValidator.Validate(document["policy_settings_schema"] as JsonObject ?? [], settings, "settings"),
                    .. TemplateValidator.Validate(parametersTemplate, parameters, "parameters")]);
            var bundle = await _bundles!.GetAsync(code, codeSha256, ct);
            if (_pool is not null)
            {
                // Pinned: the worker never drops it to make room for the instances of calls giving their own parameters
                // (MaxInstancesPerWorker below 17 did, silently losing what management commands had done), and one its worker's
                // end recreates is rebuilt from its state or its journal before it runs anything.
                var worker = WorkerProcessPolicy.Journalled(_pool, new PolicyLoadSpec(_options.PolicyRuleUri, bundle, settings, parameters),
                    deadline, _options.MaxJournalEntries, _logger, _held?.Instance as WorkerProcessPolicy);
                await worker.WarmAsync(ct);
                instance = worker;
            }
            else
            {
                instance = InProcessPolicy.Load(_options.PythonLibrary, _options.PolicyRuleUri, bundle, settings, parameters, _options.MaxJournalEntries,
                    _logger, _held?.Instance as InProcessPolicy);
            }
        }
        if (status == "deprecated") _logger.LogWarning("policy {Policy} (revision {Revision}) is deprecated", _options.PolicyRuleUri, tag);
        // The instances made for calls' own parameters go with the instance they were made from (its bundle, settings and context).
        var byParameters = instance is not null && _held is { } before && ReferenceEquals(instance, before.Instance) ? before.ByParameters : new ParameterInstances();
        return new Held((JsonObject)document.DeepClone(), tag, status, instance, parameters, CanonicalJson.Sha256(parameters), byParameters,
            parametersTemplate, inputTemplate, fingerprint, null);
    }

    private static JsonObject Merge(JsonObject stored, JsonObject? overrides)
    {
        var merged = (JsonObject)stored.DeepClone();
        if (overrides is null) return merged;
        foreach (var (key, value) in overrides) merged[key] = value?.DeepClone();
        return merged;
    }

    private static void Ensure(IReadOnlyList<FieldError> errors)
    {
        if (errors.Count == 0) return;
        var list = new JsonArray([.. errors.Select(e => (JsonNode)new JsonObject { ["path"] = e.Path, ["message"] = e.Message })]);
        throw new PolicyGridApiException(400, "validation_failed", string.Join("; ", errors.Select(e => e.ToString())), list);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        // A re-read in flight finishes first (it never throws; the client's timeout bounds it), so it cannot
        // load a worker into the pool or release the semaphore after they are disposed.
        Task? pending;
        lock (_revalidationGate) pending = _revalidation;
        if (pending is not null) await pending;
        if (_held?.Instance is { } instance) await instance.ReleaseAsync();
        if (_held is { } held)
            foreach (var made in held.ByParameters.Close()) await made.ReleaseAsync();
        if (_pool is not null) await _pool.DisposeAsync();
        _reload.Dispose();
    }

    private sealed record Held(
        JsonObject Document,
        string Revision,
        string Status,
        IPolicyInstance? Instance,
        JsonObject Parameters,
        string ParametersKey, // CanonicalJson.Sha256(Parameters)
        ParameterInstances ByParameters,
        JsonObject ParametersTemplate,
        JsonObject InputTemplate,
        string Fingerprint,
        PolicyGridApiException? Gone);
}
