using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Bundles;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// One isolation domain's share of <see cref="PythonWorkerPool"/>: a fixed set of long-lived Python worker processes
/// that keep policy instances warm. Each
/// instance key is routed to one worker slot and stays there, so the same key always reaches the
/// same live instance; a slot runs one call at a time, so a call for a key whose worker is busy
/// waits for it. Calls past their deadline, crashes and memory blow-ups kill the worker (its
/// whole process group) and a fresh one takes the slot. Admission is bounded: past
/// <see cref="WorkerPoolOptions.MaxQueue"/> calls answer 429 with Retry-After.
/// </summary>
internal sealed class WorkerGroup : IAsyncDisposable
{
    private readonly WorkerPoolOptions options;
    private readonly ILogger logger;
    private readonly Dictionary<string, Route> routes = new(StringComparer.Ordinal);
    private readonly Lock routeGate = new();
    private readonly SemaphoreSlim startGate = new(1, 1);
    private WorkerSlot[] slots = [];
    private WorkerLaunch? launch;
    private int admitted;
    private long routeClock;
    private int newKeys;
    private long roundTrips;
    private long loadSpecsSent;
    // The sha256 of every bundle an instance was created from on this group's workers: a worker keeps a bundle's module
    // (and may import from its directory) for as long as it lives, so these stay in use until the group stops.
    private readonly HashSet<string> bundlesLoaded = new(StringComparer.Ordinal);
    private bool disposed;
    private readonly bool warmAll;
    // Each slot's own uid when the pool found them free (WorkerPoolOptions.SeparateWorkerUsers); held until disposed.
    private WorkerUidLease? uidLease;
    // Made at start, removed at dispose (see PythonInterpreter.CreateWorkDirectory).
    private string? workDirectory;

    /// <param name="warmAll">Start every worker with the group; otherwise only the first, and each other when a call first needs it.</param>
    public WorkerGroup(WorkerPoolOptions options, ILogger logger, bool warmAll = true)
    {
        this.warmAll = warmAll;
        ArgumentNullException.ThrowIfNull(options);
        if (options.Workers < 1) throw new ArgumentOutOfRangeException(nameof(options), "Workers must be at least 1");
        this.options = options;
        this.logger = logger;
        packLimitTicks = (long)(options.PackCallsUnder.TotalSeconds * Stopwatch.Frequency);
        packStallTicks = 10 * packLimitTicks;
        packMaxCpuPermille = (int)(options.PackBelowCpuShare * 1000);
    }

    public WorkerPoolStatus Status
    {
        get
        {
            var first = slots.Length > 0 ? slots[0].Current : null;
            return new(launch?.Executable ?? "", first?.PythonVersion ?? "", launch?.DropPrivileges ?? false,
                slots.Length, first?.Uid ?? -1, Volatile.Read(ref admitted)) { PrivateTemp = first is { SharedTemp: null }, PrivateIpc = first is { SharedIpc: null }, HostViews = first?.HostViews, Queued = slots.Sum(s => s.Queued) };
        }
    }

    /// <summary>Adds this group's live worker processes to <paramref name="into"/>.</summary>
    public void AddLiveWorkers(List<WorkerProcess> into)
    {
        foreach (var slot in slots)
        {
            if (slot.Current is not { IsAlive: true } worker) continue;
            try { into.Add(new WorkerProcess(worker.Pid, worker.Uid)); }
            catch (InvalidOperationException) { } // stopped meanwhile
        }
    }

    /// <summary>
    /// Picks the interpreter (checking it works as the worker user, else the configured fallback)
    /// and starts every worker. Idempotent; calls made before it start the pool themselves.
    /// </summary>
    public async Task StartAsync(CancellationToken ct = default)
    {
        if (launch is not null) return;
        await startGate.WaitAsync(ct);
        try
        {
            if (launch is not null) return;
            ObjectDisposedException.ThrowIf(disposed, this);
            var directory = workDirectory ??= PythonInterpreter.CreateWorkDirectory(options.WorkDirectory);
            var drop = ProcessSignals.IsRoot && !string.IsNullOrEmpty(options.RunAsUser);
            // A fixed WorkerUidBase is taken as it is only by one shared pool: with a group per policy, every group would
            // get the same uids, so there it is where the search for free ones starts.
            if (drop && (options.WorkerUidBase is null ? options.SeparateWorkerUsers : options.IsolatePolicies))
                uidLease ??= WorkerUidLease.Reserve(options.Workers, options.WorkerUidBase ?? options.WorkerUidStart);
            WorkerLaunch chosen;
            PythonWorker first;
            try
            {
                (chosen, first) = await StartFirstWorkerAsync(directory, drop, ct);
            }
            catch (InvalidOperationException e) when (uidLease is not null && e.InnerException is not WorkerStartException { Setting: not null })
            {
                // E.g. a user namespace that maps only a few thousand uids: one shared user is still better than root.
                logger.LogWarning("Policy workers cannot run as uids of their own ({Uids}): {Reason}. Every worker runs as {User} instead: "
                    + "a policy can then signal the other workers", string.Join(", ", uidLease.Uids), e.Message, options.RunAsUser);
                uidLease.Dispose();
                uidLease = null;
                (chosen, first) = await StartFirstWorkerAsync(directory, drop, ct);
            }
            var newSlots = new WorkerSlot[options.Workers];
            newSlots[0] = new WorkerSlot(0, LaunchFor(chosen, 0), logger, first);
            for (var i = 1; i < newSlots.Length; i++) newSlots[i] = new WorkerSlot(i, LaunchFor(chosen, i), logger, null);
            if (warmAll) await Task.WhenAll(newSlots.Skip(1).Select(s => s.WarmAsync(ct)));
            slots = newSlots;
            launch = chosen;
            // Debug: with a group per policy this is said at each policy's first call (the pool's Information is policy output).
            logger.LogDebug("Python worker pool ready: {Workers} workers on {Python} (Python {Version}), running as {Users}; /tmp, /var/tmp and /dev/shm {Temp}; "
                + "System V IPC and POSIX message queues {Ipc}",
                options.Workers, chosen.Executable, first.PythonVersion, DescribeUsers(first, drop),
                first.SharedTemp is { } shared ? $"are the host's ({shared})" : $"private to each worker (the host's seen read-only through {(first.HostViews == "bind" ? "bind mounts" : "a clone of their mount trees")})",
                first.SharedIpc is { } sharedIpc ? $"are the host's ({sharedIpc})" : "private to each worker");
            if (first.SharedTemp is { } why && options.PrivateTemp && ProcessSignals.IsRoot)
                logger.LogWarning("Policy workers share /tmp, /var/tmp and /dev/shm and the IPC namespace with the host, so files, shared memory "
                    + "segments and message queues a policy leaves there outlive its worker and other policies can read them: {Reason}", why);
            // Said apart only when the directories are the worker's own: otherwise the warning above has the same reason.
            else if (first.SharedIpc is { } whyIpc && options.PrivateTemp && ProcessSignals.IsRoot)
                logger.LogWarning("Policy workers share the host's IPC namespace, so shared memory segments, semaphores and message queues a policy "
                    + "makes outlive its worker and other policies can use them: {Reason}", whyIpc);
            if (first.IpcUncapped is { } uncapped)
                logger.LogWarning("Policy workers' System V shared memory, message queues and semaphores are not capped, so one policy can hold "
                    + "memory no per-worker limit counts (until its worker stops): {Reason}", uncapped);
        }
        finally
        {
            startGate.Release();
        }
    }

    private WorkerLaunch LaunchFor(WorkerLaunch chosen, int slot) =>
        !chosen.DropPrivileges ? chosen
        : uidLease is { } lease ? chosen with { Uid = lease.Uids[slot] }
        : options.WorkerUidBase is { } uidBase ? chosen with { Uid = uidBase + slot }
        : chosen;

    private string DescribeUsers(PythonWorker first, bool drop) =>
        !drop ? $"uid {first.Uid}"
        : uidLease is { } lease ? $"uids {string.Join(", ", lease.Uids)}, one per worker"
        : options.WorkerUidBase is { } uidBase ? $"uids {uidBase}..{uidBase + options.Workers - 1}, one per worker"
        : $"uid {first.Uid} ({options.RunAsUser}), shared by every worker";

    // The interpreter that worked for a configuration, so later pools in this process (tests,
    // restarts of the runtime) skip probing one that cannot run as the worker user.
    private static readonly ConcurrentDictionary<(string, string, string, bool), string> ChosenInterpreters = new();

    private async Task<(WorkerLaunch, PythonWorker)> StartFirstWorkerAsync(string directory, bool drop, CancellationToken ct)
    {
        var cacheKey = (options.PythonExecutable, options.FallbackPythonExecutable, options.RunAsUser, drop);
        if (ChosenInterpreters.TryGetValue(cacheKey, out var known))
        {
            try
            {
                var launchKnown = LaunchFor(new WorkerLaunch(known, directory, options, drop), 0);
                return (launchKnown, await PythonWorker.StartAsync(launchKnown, logger, ct));
            }
            catch (WorkerStartException e) when (e.Setting is not null)
            {
                throw new InvalidOperationException(e.Message, e);
            }
            catch (WorkerStartException)
            {
                ChosenInterpreters.TryRemove(cacheKey, out _);
            }
        }
        var candidates = new List<string> { options.PythonExecutable };
        if (!string.IsNullOrWhiteSpace(options.FallbackPythonExecutable) && options.FallbackPythonExecutable != options.PythonExecutable)
            candidates.Add(options.FallbackPythonExecutable);
        var failures = new List<string>();
        foreach (var candidate in candidates)
        {
            try
            {
                var executable = await PythonInterpreter.ResolveAsync(candidate, ct);
                var attempt = LaunchFor(new WorkerLaunch(executable, directory, options, drop), 0);
                var worker = await PythonWorker.StartAsync(attempt, logger, ct);
                ChosenInterpreters[cacheKey] = executable;
                if (failures.Count > 0)
                    logger.LogWarning("Python '{Configured}' cannot run policies here ({Reason}); using the fallback {Fallback}",
                        options.PythonExecutable, failures[0], executable);
                return (attempt, worker);
            }
            catch (WorkerStartException e) when (e.Setting is not null)
            {
                // A setting the worker cannot be given (PrivateTemp where the mounts fail): no other interpreter or user helps.
                throw new InvalidOperationException(e.Message, e);
            }
            catch (WorkerStartException e)
            {
                // Said once: in the warning when a fallback works, in the error when none does.
                var user = !drop ? "" : LaunchFor(new WorkerLaunch(candidate, directory, options, drop), 0).Uid is { } uid ? $" as uid {uid}" : $" as user {options.RunAsUser}";
                failures.Add($"{candidate}{user}: {e.Message}");
            }
        }
        throw new InvalidOperationException("No usable Python interpreter for policy workers: " + string.Join("; ", failures)
            + ". Set PolicyGrid:Runtime:Pool:PythonExecutable (or FallbackPythonExecutable) to an interpreter the worker user can read.");
    }

    /// <summary>
    /// Runs <paramref name="call"/> on its warm instance (created on first use) and answers what the
    /// method returned. Throws <see cref="PolicyGridException"/>: 422 policy_error (the policy raised:
    /// "Type: message"), 422 policy_crashed, 422 policy_memory_limit, 504 policy_timeout, 429 overloaded.
    /// </summary>
    public async Task<JsonNode?> InvokeAsync(PolicyInvocation call, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(call);
        return Detach(await RunAsync(call, once: false, withState: false, ct), "value");
    }

    /// <summary>
    /// Runs <paramref name="call"/> on any worker, on that worker's own warm instance for
    /// <see cref="PolicyInvocation.InstanceKey"/> (one per worker, created on first use). For calls that need no
    /// particular instance — Type 2, whose context travels with the call. A call of a key whose calls have been
    /// short joins a worker busy with short calls (<see cref="WorkerPoolOptions.PackCallsUnder"/>); any other goes
    /// to the least busy worker, so it never waits behind one worker while another is free, and calls that must
    /// overlap (branches of a graph) do.
    /// </summary>
    public async Task<JsonNode?> InvokeOnAnyWorkerAsync(PolicyInvocation call, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(call);
        return Detach(await RunAsync(call, once: false, withState: false, ct, anyWorker: true), "value");
    }

    /// <summary>
    /// Like <see cref="InvokeAsync"/>, and in the same worker round trip answers the instance's <c>get_state()</c>
    /// taken right after the method, for callers that persist instance state after every call (Type 4).
    /// A <c>get_state</c> that raises, or answers what is not JSON or no dict (None aside), is a 422 policy_error naming
    /// <c>get_state()</c>: <c>set_state</c> is handed back what it answered, so it must be what the store keeps as is.
    /// </summary>
    public async Task<PolicyAnswer> InvokeWithStateAsync(PolicyInvocation call, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(call);
        var reply = await RunAsync(call, once: false, withState: call.TakesState, ct);
        return new PolicyAnswer(Detach(reply, "value"), reply["keeps_state"]?.GetValue<bool>() == true, Detach(reply, "state")?.AsObject(),
            reply["created"]?.GetValue<bool>() == true);
    }

    /// <summary>Worker round trips made so far (every request frame sent to a worker), for tests and diagnostics.</summary>
    public long RoundTrips => Interlocked.Read(ref roundTrips);

    /// <summary>Calls whose frame carried the instance's load spec: the first call of an instance on a worker, and again only after the worker dropped it.</summary>
    public long LoadSpecsSent => Interlocked.Read(ref loadSpecsSent);

    /// <summary>Writes to workers so far: each carries every request that queued for its worker while it was busy.</summary>
    public long Batches => slots.Sum(s => Interlocked.Read(ref s.Batches));

    /// <summary>
    /// Runs a method on a brand-new instance that is dropped afterwards (management on Type 2, dry loads); with a
    /// <paramref name="budget"/>, not started past it (<see cref="PolicyInvocation.Budget"/>, <paramref name="call"/> its name).
    /// </summary>
    public Task<JsonNode?> InvokeOnceAsync(PolicyLoadSpec load, string method, JsonObject arguments, TimeSpan deadline,
        CallBudget? budget, string? call, StartCheck? check = null, CancellationToken ct = default)
    {
        var key = "once:" + Guid.NewGuid().ToString("N");
        return ValueOfAsync(RunAsync(new PolicyInvocation(key, load, method, arguments, deadline) { Budget = budget, Call = call, StartCheck = check },
            once: true, withState: false, ct));
    }

    private static async Task<JsonNode?> ValueOfAsync(Task<JsonObject> reply) => Detach(await reply, "value");

    // Callers put what a policy answered into their own documents; a node still inside the reply could not be.
    private static JsonNode? Detach(JsonObject reply, string property) =>
        reply.Remove(property, out var node) ? node : null;

    private void NoteBundle(string sha)
    {
        lock (bundlesLoaded) bundlesLoaded.Add(sha);
    }

    /// <summary>Adds the sha256 of every bundle this group's workers created an instance from to <paramref name="into"/>.</summary>
    public void AddBundlesLoaded(HashSet<string> into)
    {
        lock (bundlesLoaded) into.UnionWith(bundlesLoaded);
    }

    /// <summary>Whether calls of <paramref name="instanceKey"/> were routed to a worker of this group (so it may hold the instance).</summary>
    public bool HasRoute(string instanceKey)
    {
        lock (routeGate) return routes.ContainsKey(instanceKey);
    }

    /// <summary>Drops the instance for <paramref name="instanceKey"/> (e.g. a removed function); the next call creates it anew.</summary>
    public async Task ReleaseAsync(string instanceKey, CancellationToken ct = default)
    {
        WorkerSlot? slot;
        lock (routeGate)
        {
            // The key keeps its route: made again, the instance comes back on the worker it had. Routed afresh, it took
            // the next worker in turn, often the one a sibling runs on (function replicas spread apart at deploy), and
            // then waited behind that sibling's calls. Routes of keys never used again age out (TrimRoutes).
            if (!routes.TryGetValue(instanceKey, out var route)) return;
            slot = route.Slot;
            route.Pinned = false; // released: its route may age out like any other
        }
        var unload = Send(slot, w =>
        {
            w.WriteStartObject();
            w.WriteString("op", "unload");
            w.WriteString("key", instanceKey);
            w.WriteEndObject();
        }, instanceKey, TimeSpan.FromSeconds(5), ct, unloads: instanceKey);
        try
        {
            await unload.Reply.WaitAsync(ct);
        }
        catch (PolicyGridException)
        {
            // The worker died on the way: its instances, this one included, are gone with it.
        }
    }

    private async Task<JsonObject> RunAsync(PolicyInvocation call, bool once, bool withState, CancellationToken ct, bool anyWorker = false)
    {
        if (!PolicyMethods.All.Contains(call.Method))
            throw new ArgumentException($"unknown policy method '{call.Method}'", nameof(call));
        if (call.Deadline <= TimeSpan.Zero)
            throw Problems.Validation("timeout_seconds", "must be greater than 0");
        // The instant the caller's budget runs out, on the clock the drainer and the worker read (0: no budget, the usual case).
        var startBy = call.Budget is { } budget ? StartByOf(budget, call) : 0;
        try
        {
            await StartAsync(ct);
        }
        catch (InvalidOperationException e)
        {
            throw Problems.BackendUnavailable("policy workers are not available: " + e.Message, e);
        }
        if (Interlocked.Increment(ref admitted) > options.MaxQueue)
        {
            Interlocked.Decrement(ref admitted);
            throw Problems.Overloaded($"the policy worker pool is full ({options.MaxQueue} calls running or waiting); retry later", options.RetryAfterSeconds);
        }
        // Any-worker calls are sorted into short (packed onto busy workers) and the rest (spread); see PackedSlot.
        bool? shortCall = anyWorker ? IsShortCall(call.InstanceKey) : null;
        var slot = Reserve(once || anyWorker ? null : call.InstanceKey, shortCall, call.Load.Pinned);
        // On any worker, each worker has its own instance: "key@slot".
        var keySlot = anyWorker ? slot.Index : -1;
        WorkerRequest? request = null;
        try
        {
            // A "once" instance is created by this very request; any other carries its load spec only to a worker
            // process that has not had it yet (PythonWorker.WriteFrame), since specs can be large (parameters).
            request = once
                ? Send(slot, w => WriteInvoke(w, call, withLoad: true, once, withState, keySlot, startBy), call.Load.RuleId, call.Deadline, ct,
                    startBy: startBy, budgeted: call, check: call.StartCheck)
                : Send(slot, w => WriteInvoke(w, call, withLoad: false, once, withState, keySlot, startBy), call.Load.RuleId, call.Deadline, ct,
                    call.InstanceKey, LoadJsonOf(call.Load), call.RestoreState,
                    mayRunHere: shortCall == true && Volatile.Read(ref admitted) <= RunHereBelowCalls, startBy: startBy, budgeted: call,
                    check: call.StartCheck);
            var reply = await ReplyWithinQueueWaitAsync(request, call, ct);
            if (request.CarriedLoad) Interlocked.Increment(ref loadSpecsSent);
            return Interpret(reply, slot, call);
        }
        finally
        {
            Interlocked.Decrement(ref slot.InFlight);
            if (shortCall is false) Interlocked.Decrement(ref slot.SlowInFlight);
            Interlocked.Decrement(ref admitted);
            // Failures count too: a call that ran into its deadline is the slowest kind.
            if (anyWorker && request is not null) NoteCallTicks(call.InstanceKey, request.ServiceTicks);
            // Only a call that created its instance: a warm call adds nothing here.
            if (request is not null && (once || request.CarriedLoad)) NoteBundle(call.Load.Bundle.Sha256);
        }
    }

    // A short call that finds its worker idle is sent from the caller's thread (WorkerSlot.Submit) only while this
    // group has at most this many calls in flight: with more, the caller's blocked thread is missed by the others,
    // and the drainer batches them anyway (measured on the Type 2 bench: p50 0.18 -> 0.14 ms with one client,
    // fewer requests per second with 16 when every idle moment was taken by a caller).
    private const int RunHereBelowCalls = 2;

    // The Stopwatch timestamp at which the budget runs out; a call whose budget is already spent is not queued at all.
    // On Linux, Stopwatch reads CLOCK_MONOTONIC, as the worker's time.monotonic() does (PythonWorker checks at start).
    private static long StartByOf(CallBudget budget, PolicyInvocation call)
    {
        var left = budget.Wait - budget.Elapsed;
        if (left <= TimeSpan.Zero) throw budget.RanOut(call.Describe());
        return Stopwatch.GetTimestamp() + (long)(left.TotalSeconds * Stopwatch.Frequency);
    }

    // Every request frame a worker gets goes through here (counted in RoundTrips).
    private WorkerRequest Send(WorkerSlot slot, Action<Utf8JsonWriter> frame, string policy, TimeSpan deadline, CancellationToken ct,
        string? loadKey = null, ReadOnlyMemory<byte> loadJson = default, JsonObject? restoreState = null, bool mayRunHere = false,
        string? unloads = null, long startBy = 0, PolicyInvocation? budgeted = null, StartCheck? check = null)
    {
        Interlocked.Increment(ref roundTrips);
        var request = new WorkerRequest(HostFrames.Encode(frame), policy, deadline, ct)
        {
            LoadKey = loadKey, LoadJson = loadJson, RestoreState = restoreState, Unloads = unloads, StartBy = startBy,
            Budgeted = startBy != 0 ? budgeted : null, Check = check,
        };
        slot.Submit(request, mayRunHere);
        return request;
    }

    // A caller waits at most QueueWait for its request to be sent (then 429), and a budgeted one no longer than its budget
    // (then the 504 of a call not started); once sent, the request's own deadline bounds the wait, and the caller's
    // token, if it fires, stops the worker running it.
    private async Task<JsonObject> ReplyWithinQueueWaitAsync(WorkerRequest request, PolicyInvocation call, CancellationToken ct)
    {
        var wait = options.QueueWait;
        var byBudget = false;
        if (request.StartBy != 0)
        {
            var left = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), request.StartBy);
            if (left < TimeSpan.Zero) left = TimeSpan.Zero;
            if (wait == Timeout.InfiniteTimeSpan || left < wait) (wait, byBudget) = (left, true);
        }
        try
        {
            return await request.Reply.WaitAsync(wait, ct);
        }
        catch (TimeoutException) when (request.TryAbandon())
        {
            if (byBudget) throw request.NotStarted();
            throw Problems.Overloaded($"policy {call.Load.RuleId} waited {options.QueueWait.TotalSeconds:0.#}s for its worker; retry later", options.RetryAfterSeconds);
        }
        catch (OperationCanceledException) when (!request.Reply.IsCompleted && request.TryAbandon())
        {
            throw;
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            // Already sent: it runs to its reply, its deadline, or the worker stopped for the caller's token.
        }
        return await request.Reply;
    }

    /// <summary>Answers a successful reply (its <c>value</c>, and <c>state</c> when asked for); throws the contract's error otherwise.</summary>
    private JsonObject Interpret(JsonObject reply, WorkerSlot slot, PolicyInvocation call)
    {
        if (reply["ok"]?.GetValue<bool>() == true)
        {
            if (reply["retiring"]?.GetValue<bool>() == true)
                logger.LogInformation("policy worker {Slot} used most of its CPU allowance; replacing it", slot.Index);
            return reply;
        }
        var kind = reply["kind"]?.GetValue<string>() ?? "error";
        var type = reply["type"]?.GetValue<string>() ?? "Exception";
        var message = reply["message"]?.GetValue<string>() ?? "";
        var traceback = reply["traceback"]?.GetValue<string>() ?? "";
        switch (kind)
        {
            case "not_started":
                // The worker reached it after its caller's budget ran out (it was in a batch behind slower calls): not run.
                throw call.Budget?.RanOut(call.Describe())
                    ?? Problems.PolicyTimeout($"{call.Describe()} was not started: its caller's wait ran out before its worker got to it, so it has no effect");
            case "memory":
                // The heap of a worker that hit its address-space limit is not to be trusted: the host
                // exits after this reply and the slot starts afresh (PythonWorker.ExchangeAsync).
                logger.LogWarning("policy {Policy} exceeded the worker memory limit of {Limit} bytes; worker replaced", call.Load.RuleId, options.MemoryLimitBytes);
                throw Problems.PolicyMemoryLimit($"policy {call.Load.RuleId} exceeded its memory limit of {options.MemoryLimitBytes / (1024 * 1024)} MB");
            case "load":
                logger.LogWarning("policy {Policy} could not be loaded: {Message}\n{Traceback}", call.Load.RuleId, message, traceback);
                throw new PolicyLoadException(call.Load.RuleId, RelativeToBundle(message, call.Load.Bundle));
            case "restore":
                // set_state(saved) raised on the instance made to replace a lost one: the method never ran.
                logger.LogWarning("policy {Policy}: set_state() raised {Type} restoring a recreated instance: {Message}\n{Traceback}",
                    call.Load.RuleId, type, message, traceback);
                throw new PolicyStateNotRestoredException($"{type}: {RelativeToBundle(message, call.Load.Bundle)}");
            case "state":
                // The method itself ran; it is the state snapshot after it that failed (message names get_state()).
                logger.LogWarning("policy {Policy}: {Message}\n{Traceback}", call.Load.RuleId, message, traceback);
                throw Problems.PolicyError(message);
            default:
                logger.LogWarning("policy {Policy} raised {Type}: {Message}\n{Traceback}", call.Load.RuleId, type, message, traceback);
                var error = $"{type}: {RelativeToBundle(message, call.Load.Bundle)}";
                // Said as PolicyAnswer.Created says it on success: the method ran on an instance this call created.
                if (reply["created"]?.GetValue<bool>() == true)
                    throw new PolicyRaisedOnNewInstanceException(error, reply["keeps_state"]?.GetValue<bool>() == true);
                throw Problems.PolicyError(error);
        }
    }

    /// <summary>
    /// Where this server unpacks bundles is its own business (the log keeps the full path): callers read
    /// paths relative to their bundle, e.g. <c>code/</c>.
    /// </summary>
    internal static string RelativeToBundle(string message, BundleDirectory bundle)
    {
        if (bundle.SitePackages is { Length: > 0 } site)
        {
            // A worker with a /tmp of its own names a bundle under the host's /tmp, /var/tmp or /dev/shm by its view (first: it ends with the path itself).
            if (HostView(site) is { } siteView) message = message.Replace(siteView, "<site-packages>", StringComparison.Ordinal);
            message = message.Replace(site, "<site-packages>", StringComparison.Ordinal);
        }
        var root = bundle.Root.TrimEnd('/');
        if (root.Length == 0) return message;
        if (HostView(root) is { } view) message = message.Replace(view + "/", "", StringComparison.Ordinal).Replace(view, "<bundle>", StringComparison.Ordinal);
        return message.Replace(root + "/", "", StringComparison.Ordinal).Replace(root, "<bundle>", StringComparison.Ordinal);
    }

    // Where a worker with private temp dirs (WorkerPoolOptions.PrivateTemp) sees the host's: policy_host.py's _host_path.
    private static readonly (string Directory, string View)[] HostViews =
        [("/tmp", "/tmp/.policygrid-host/tmp"), ("/var/tmp", "/tmp/.policygrid-host/var_tmp"), ("/dev/shm", "/tmp/.policygrid-host/dev_shm")];

    private static string? HostView(string path)
    {
        foreach (var (directory, view) in HostViews)
            if (path == directory || path.StartsWith(directory + "/", StringComparison.Ordinal)) return view + path[directory.Length..];
        return null;
    }

    private static void WriteInvoke(Utf8JsonWriter w, PolicyInvocation call, bool withLoad, bool once, bool withState, int keySlot, long startBy)
    {
        w.WriteStartObject();
        w.WriteString("op", "invoke");
        if (keySlot < 0) w.WriteString("key", call.InstanceKey);
        else WriteSlotKey(w, call.InstanceKey, keySlot);
        w.WriteString("method", call.Method);
        w.WriteNumber("cpu_seconds", (int)Math.Ceiling(call.Deadline.TotalSeconds) + 1);
        if (once) w.WriteBoolean("once", true);
        if (withState) w.WriteBoolean("with_state", true);
        // Seconds on CLOCK_MONOTONIC (time.monotonic() in the worker): past it, the host answers not_started instead of running the call.
        if (startBy != 0) w.WriteNumber("start_by", (double)startBy / Stopwatch.Frequency);
        if (withLoad)
        {
            w.WritePropertyName("load");
            WriteLoad(w, call.Load);
        }
        // The state to restore matters only where the instance is created: with the load spec (PythonWorker.WriteFrame).
        if (withLoad && call.RestoreState is { } state)
        {
            w.WritePropertyName("restore_state");
            state.WriteTo(w);
        }
        w.WritePropertyName("args");
        call.Arguments.WriteTo(w);
        w.WriteEndObject();
    }

    private static void WriteLoad(Utf8JsonWriter w, PolicyLoadSpec load)
    {
        w.WriteStartObject();
        w.WriteString("rule_id", load.RuleId);
        w.WriteString("sha256", load.Bundle.Sha256);
        w.WriteString("root", load.Bundle.Root);
        if (load.Bundle.SitePackages is { } site) w.WriteString("site_packages", site);
        w.WritePropertyName("settings");
        load.Settings.WriteTo(w);
        w.WritePropertyName("parameters");
        load.Parameters.WriteTo(w);
        if (load.Pinned) w.WriteBoolean("pinned", true);
        w.WriteEndObject();
    }

    // A load spec's JSON, written once per spec object (callers keep one per policy revision and shape).
    private readonly ConditionalWeakTable<PolicyLoadSpec, byte[]> loadJson = new();

    private byte[] LoadJsonOf(PolicyLoadSpec load) => loadJson.GetValue(load, static spec =>
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer)) WriteLoad(w, spec);
        return buffer.WrittenSpan.ToArray();
    });

    // "key@slot" written without building the string (this runs on every Type 2 call).
    private static void WriteSlotKey(Utf8JsonWriter w, string key, int slot)
    {
        var length = key.Length + 12;
        var rented = length > 256 ? ArrayPool<char>.Shared.Rent(length) : null;
        Span<char> chars = rented ?? stackalloc char[256];
        key.CopyTo(chars);
        chars[key.Length] = '@';
        slot.TryFormat(chars[(key.Length + 1)..], out var digits, provider: CultureInfo.InvariantCulture);
        w.WriteString("key", chars[..(key.Length + 1 + digits)]);
        if (rented is not null) ArrayPool<char>.Shared.Return(rented);
    }

    // Picks the slot (the key's own; with no key, see PackedSlot, or the least busy) and counts the call in it
    // in one step, so two calls arriving together never both see the same slot as idle.
    private WorkerSlot Reserve(string? routedKey, bool? shortCall = null, bool pinned = false)
    {
        lock (routeGate)
        {
            var slot = routedKey is not null ? RouteFor(routedKey, pinned) : shortCall == true ? PackedSlot() : LeastBusySlot();
            Interlocked.Increment(ref slot.InFlight);
            if (shortCall is false) Interlocked.Increment(ref slot.SlowInFlight);
            return slot;
        }
    }

    // New keys take the slots in turn. Keys are long-lived, so how busy a slot happens to be when a key is
    // first used says little about later; taking turns spreads keys evenly and puts keys first used one
    // after another (the replicas of functions warmed at deploy) on different workers, so instances that
    // must run at the same time can, even while a slow call still occupies one worker.
    // A worker whose turn it is but which is busy is passed over for the next idle one: a key first used while a slow
    // call holds a worker (a function instance autoscaling adds because the others are busy, one restarted beside a held
    // sibling) waited behind that call, which is what it was made to avoid.
    private WorkerSlot SlotForNewKey()
    {
        var all = slots;
        var turn = (int)(unchecked((uint)newKeys++) % (uint)all.Length);
        for (var i = 0; i < all.Length; i++)
        {
            var slot = all[(turn + i) % all.Length];
            if (Volatile.Read(ref slot.InFlight) == 0) return slot;
        }
        return all[turn];
    }

    // A call any worker may run that is known to be short joins the first busy worker, in slot order, that takes
    // short calls (WorkerSlot.CanJoin); every other call goes to the least busy worker. Short calls so share one
    // worker's batches rather than each waking a worker of its own, while long, untimed and CPU-heavy ones spread.
    private WorkerSlot PackedSlot()
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var slot in slots)
            if (slot.Joinable(packMaxCpuPermille, packStallTicks, now)) return slot;
        return LeastBusySlot();
    }

    // Packing's limits in the units the choice uses (PackCallsUnder, PackBelowCpuShare). A call still running after
    // ten times the short-call limit was not short: its worker is passed over.
    private readonly long packLimitTicks;
    private readonly long packStallTicks;
    private readonly int packMaxCpuPermille;

    private bool IsShortCall(string key) =>
        packLimitTicks > 0 && packMaxCpuPermille > 0 && callTicks.TryGetValue(key, out var ticks) && ticks < packLimitTicks;

    // How long a call of each any-worker instance key keeps a worker busy (a moving average of Stopwatch ticks),
    // for PackedSlot. Bounded: forgetting a key only means its next call spreads instead of packing.
    private readonly ConcurrentDictionary<string, long> callTicks = new(StringComparer.Ordinal);
    private const int MaxTimedKeys = 4096;

    private void NoteCallTicks(string key, long ticks)
    {
        if (ticks < 0) return;
        if (callTicks.Count >= MaxTimedKeys && !callTicks.ContainsKey(key)) callTicks.Clear();
        callTicks.AddOrUpdate(key, static (_, sample) => sample, static (_, known, sample) => known + (sample - known) / 4, ticks);
    }

    private WorkerSlot LeastBusySlot()
    {
        var all = slots;
        return all.MinBy(s => (Volatile.Read(ref s.InFlight), s.Routes))!;
    }

    // Called holding routeGate (Reserve).
    private WorkerSlot RouteFor(string key, bool pinned)
    {
        routeClock++;
        if (routes.TryGetValue(key, out var route))
        {
            route.LastUsed = routeClock;
            return route.Slot;
        }
        var slot = SlotForNewKey();
        slot.Routes++;
        routes[key] = new Route(slot) { LastUsed = routeClock, Pinned = pinned };
        TrimRoutes();
        return slot;
    }

    // Workers drop their least recently used instances past MaxInstancesPerWorker; routes that old
    // point at instances that are gone anyway, so forgetting them keeps the table bounded. A pinned instance is never
    // dropped, so its route stays: routed afresh, it could be made again on another worker, without what it held.
    private void TrimRoutes()
    {
        var cap = slots.Length * options.MaxInstancesPerWorker * 2;
        if (routes.Count <= cap) return;
        foreach (var (key, route) in routes.Where(r => !r.Value.Pinned).OrderBy(r => r.Value.LastUsed).Take(routes.Count - cap * 3 / 4).ToList())
        {
            routes.Remove(key);
            route.Slot.Routes--;
        }
    }

    public async ValueTask DisposeAsync()
    {
        disposed = true;
        await Task.WhenAll(slots.Select(s => s.StopAsync()));
        uidLease?.Dispose();
        if (workDirectory is not null)
        {
            try { Directory.Delete(workDirectory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        startGate.Dispose();
    }

    private sealed class Route(WorkerSlot slot)
    {
        public WorkerSlot Slot { get; } = slot;
        public long LastUsed { get; set; }
        public bool Pinned { get; set; }
    }
}

/// <summary>The bundle could not produce an instance: no code/function.py, no AIOSv1PolicyRule class, or __init__ raised.</summary>
/// <summary>
/// The policy raised (422 policy_error, the same message) in a method that ran on an instance this very call created:
/// first use, or again after its worker was replaced or it was evicted (<see cref="PolicyAnswer.Created"/> of a call that
/// raised). <see cref="KeepsState"/> says whether its class has <c>get_state</c> (then it was restored with <c>set_state</c>).
/// </summary>
public sealed class PolicyRaisedOnNewInstanceException(string message, bool keepsState)
    : PolicyGridException(422, ErrorCodes.PolicyError, message)
{
    public bool KeepsState { get; } = keepsState;
}

/// <summary>
/// The policy's <c>set_state</c> raised (422 policy_error, <c>Type: message</c>) on an instance the pool created to replace a
/// lost one, with the state its caller handed it (<see cref="PolicyInvocation.RestoreState"/>): the method did not run, and
/// the worker keeps no instance, so the next call creates one and calls <c>set_state</c> again. It used to read as the
/// method's own error.
/// </summary>
public sealed class PolicyStateNotRestoredException(string message) : PolicyGridException(422, ErrorCodes.PolicyError, message);

public sealed class PolicyLoadException(string policy, string reason)
    : PolicyGridException(422, ErrorCodes.PolicyError, $"policy {policy} cannot be loaded: {reason}")
{
    public string Reason { get; } = reason;
}
