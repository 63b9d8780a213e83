using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>What the pool is running on, for logs, health and tests.</summary>
/// <summary>A live worker process: its pid (also its session id) and the uid it runs as.</summary>
public sealed record WorkerProcess(int Pid, int Uid);

public sealed record WorkerPoolStatus(string Interpreter, string PythonVersion, bool DropsPrivileges, int Workers, int WorkerUid, int Admitted)
{
    /// <summary>Whether the workers' /tmp, /var/tmp and /dev/shm are their own (<see cref="WorkerPoolOptions.PrivateTemp"/>).</summary>
    public bool PrivateTemp { get; init; }

    /// <summary>
    /// Whether each worker has an IPC namespace of its own (with <see cref="WorkerPoolOptions.PrivateTemp"/>): System V
    /// shared memory, semaphores and message queues and POSIX message queues a policy makes reach no other worker and
    /// go with the worker.
    /// </summary>
    public bool PrivateIpc { get; init; }

    /// <summary>
    /// How the workers with private temp dirs see the host's, read-only under /tmp/.policygrid-host: "clone" (a copy of
    /// each directory's mount tree, Linux 5.12 and later), "bind" (a bind of each directory and of each mount inside it,
    /// where the kernel lacks or refuses the new mount calls); null when the directories are the host's.
    /// </summary>
    public string? HostViews { get; init; }

    /// <summary>
    /// Calls waiting in a worker's queue for it to get free (admitted, not yet sent): those are checked again before they
    /// start (their budget, their policy's retirement).
    /// </summary>
    public int Queued { get; init; }
}

/// <summary>
/// The Python worker processes that run policy code, kept warm. Each policy (by name: every version of it) runs in
/// worker processes of its own (<see cref="WorkerPoolOptions.IsolatePolicies"/>): policies of different names never
/// share an interpreter, so one cannot read another's parameters, settings or context from memory, nor patch its
/// code to answer differently. Each policy's group holds up to <see cref="WorkerPoolOptions.Workers"/> processes,
/// started as calls need them; at most <see cref="WorkerPoolOptions.MaxResidentPolicies"/> groups stay resident,
/// the least recently used idle group being stopped for a new one. Within a group, calls are routed, batched,
/// timed and killed as <see cref="WorkerGroup"/> describes. Throws <see cref="PolicyGridException"/>: 422
/// policy_error, policy_crashed, policy_memory_limit; 504 policy_timeout; 429 overloaded.
/// </summary>
public sealed class PythonWorkerPool : IAsyncDisposable
{
    private readonly WorkerPoolOptions options;
    private readonly ILogger logger;
    private readonly Lock gate = new();
    private readonly Dictionary<string, Group> groups = new(StringComparer.Ordinal);
    private long clock;
    // Evictions of groups used within the last ThrashWindow, for the warning that MaxResidentPolicies is too small.
    private static readonly TimeSpan ThrashWindow = TimeSpan.FromSeconds(10);
    private long lastThrashWarning; // Environment.TickCount64 of the last warning, 0 before the first
    private long retiredRoundTrips, retiredBatches, retiredLoadSpecs;
    private bool disposed;
    private bool processPrepared;

    /// <summary>
    /// The event id of what policies print or log (one entry per line, and one when a call's output was cut),
    /// so a log consumer can tell policy output from the pool's own messages.
    /// </summary>
    public static readonly EventId PolicyOutput = new(1001, "PolicyOutput");

    /// <param name="bundles">
    /// Where load specs' bundles came from: a load that fails because its bundle's directory was removed meanwhile (the
    /// bundle cache's sweep, here or in another process) has it put back (<see cref="IPolicyBundleSource.RestoreAsync"/>)
    /// and is tried once more. Null: such a load fails (422).
    /// </param>
    public PythonWorkerPool(WorkerPoolOptions options, ILogger<PythonWorkerPool> logger, IPolicyBundleSource? bundles = null)
    {
        this.bundles = bundles;
        ArgumentNullException.ThrowIfNull(options);
        if (options.Workers < 1) throw new ArgumentOutOfRangeException(nameof(options), "Workers must be at least 1");
        if (options.MaxResidentPolicies < 1) throw new ArgumentOutOfRangeException(nameof(options), "MaxResidentPolicies must be at least 1");
        if (options.PrivateTemp && options.PrivateTempBytes < 1) throw new ArgumentOutOfRangeException(nameof(options), "PrivateTempBytes must be at least 1");
        if (options.IdleStopAfter < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(options), "IdleStopAfter must not be negative");
        this.options = options;
        this.logger = logger;
        if (options.IdleStopAfter > TimeSpan.Zero)
        {
            // Looked at a few times per IdleStopAfter (at most once a minute): a group goes between 1 and 1.25 times it after its last call.
            var every = TimeSpan.FromTicks(Math.Min(options.IdleStopAfter.Ticks / 4, TimeSpan.FromMinutes(1).Ticks));
            if (every < TimeSpan.FromMilliseconds(100)) every = TimeSpan.FromMilliseconds(100);
            idleTimer = new Timer(static state => ((PythonWorkerPool)state!).StopIdle(Environment.TickCount64), this, every, every);
        }
    }

    private readonly Timer? idleTimer;
    private readonly IPolicyBundleSource? bundles;

    /// <summary>
    /// Stops the groups no call has used for <see cref="WorkerPoolOptions.IdleStopAfter"/> as of <paramref name="now"/>
    /// (<see cref="Environment.TickCount64"/>), that none is using and that never ran a long-lived instance
    /// (<see cref="PolicyInvocation.KeepsWarm"/>: a function replica or an SDK evaluator whose state would go with it); answers
    /// how many. The pool's timer calls it.
    /// </summary>
    internal int StopIdle(long now)
    {
        var limit = (long)options.IdleStopAfter.TotalMilliseconds;
        if (limit <= 0) return 0;
        List<Group> idle;
        lock (gate)
        {
            if (disposed) return 0;
            var keys = groups.Where(kv => kv.Value.Users == 0 && !kv.Value.KeepsWarm && now - kv.Value.LastUsedAt >= limit).Select(kv => kv.Key).ToList();
            idle = [];
            foreach (var key in keys)
            {
                groups.Remove(key, out var group);
                Retire(group!);
                idle.Add(group!);
            }
        }
        if (idle.Count > 0) logger.LogDebug("stopping the workers of {Count} policies unused for {Idle}", idle.Count, options.IdleStopAfter);
        foreach (var group in idle) _ = group.Workers.DisposeAsync().AsTask();
        return idle.Count;
    }

    // A group and the calls now using it: a group is stopped only when none is.
    private sealed class Group(WorkerGroup workers)
    {
        public WorkerGroup Workers { get; } = workers;
        public int Users;
        public long LastUsed;
        public long LastUsedAt; // Environment.TickCount64
        public bool Stopping; // its policy is gone (StopPolicyAsync): stopped once the calls now using it are done
        public bool KeepsWarm; // ran a long-lived instance (PolicyInvocation.KeepsWarm): never stopped for being idle
        public readonly HashSet<string> LongLived = new(StringComparer.Ordinal); // those instances' keys, until released; under gate
    }

    // Groups of policies that are gone, out of `groups` (a new call of that name makes a fresh group) but still running the
    // calls that were using them; stopped by the Release that leaves them unused. Their workers are still live workers.
    private readonly List<Group> draining = [];

    /// <summary>The isolation domain of a policy: its name (the part of its URI before the version), or one shared domain when isolation is off.</summary>
    internal string DomainOf(string ruleId)
    {
        if (!options.IsolatePolicies) return "";
        var colon = ruleId.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? ruleId : ruleId[..colon];
    }

    /// <summary>What the most recently used group runs on (the interpreter, its user); before any call, what <see cref="StartAsync"/> started.</summary>
    public WorkerPoolStatus Status
    {
        get
        {
            lock (gate)
            {
                var latest = groups.Values.MaxBy(g => g.LastUsed);
                var status = latest?.Workers.Status ?? new WorkerPoolStatus("", "", false, 0, -1, 0);
                return status with
                {
                    Admitted = groups.Values.Concat(draining).Sum(g => g.Workers.Status.Admitted),
                    Queued = groups.Values.Concat(draining).Sum(g => g.Workers.Status.Queued),
                };
            }
        }
    }

    /// <summary>
    /// The worker processes alive now, each with the uid it runs as. Each is the leader of a session of its own (the
    /// host calls setsid), which every process a policy starts shares unless it calls setsid again.
    /// </summary>
    public IReadOnlyList<WorkerProcess> LiveWorkers()
    {
        List<Group> all;
        lock (gate) all = [.. groups.Values, .. draining];
        var live = new List<WorkerProcess>();
        foreach (var group in all) group.Workers.AddLiveWorkers(live);
        return live;
    }

    /// <summary>A policy (its name) whose workers run, and whether they hold a long-lived instance not released since.</summary>
    public sealed record RunningPolicy(string Name, bool HoldsLongLivedInstances);

    /// <summary>
    /// The policies whose workers run now (not those already stopping), each with whether its workers hold a long-lived
    /// instance (<see cref="PolicyInvocation.KeepsWarm"/>: a deployed function's replica, an SDK evaluator's instance) that
    /// was not released. None with <see cref="WorkerPoolOptions.IsolatePolicies"/> off: one group runs every policy.
    /// </summary>
    public IReadOnlyList<RunningPolicy> RunningPolicies()
    {
        if (!options.IsolatePolicies) return [];
        // The group of the empty name is the one StartAsync started to prove the interpreter: no policy's.
        lock (gate) return [.. groups.Where(kv => kv.Key.Length > 0).Select(kv => new RunningPolicy(kv.Key, kv.Value.LongLived.Count > 0))];
    }

    /// <summary>Policy groups resident now (for tests and diagnostics).</summary>
    public int ResidentGroups
    {
        get
        {
            lock (gate) return groups.Count;
        }
    }

    /// <summary>
    /// Proves the interpreter works as the worker user by starting the first group's first worker, so the first policy
    /// call does not pay for choosing it and a broken interpreter is reported at start. Calls made before start the pool themselves.
    /// </summary>
    public Task StartAsync(CancellationToken ct = default) =>
        WithGroup("", async g =>
        {
            await g.StartAsync(ct);
            return true;
        }, ct: ct);

    /// <inheritdoc cref="WorkerGroup.InvokeAsync"/>
    public Task<JsonNode?> InvokeAsync(PolicyInvocation call, CancellationToken ct = default) =>
        WithGroup(DomainOf(call), g => g.InvokeAsync(call, ct), LongLivedKey(call), call.Load, ct);

    /// <inheritdoc cref="WorkerGroup.InvokeOnAnyWorkerAsync"/>
    public Task<JsonNode?> InvokeOnAnyWorkerAsync(PolicyInvocation call, CancellationToken ct = default) =>
        WithGroup(DomainOf(call), g => g.InvokeOnAnyWorkerAsync(call, ct), LongLivedKey(call), call.Load, ct);

    /// <inheritdoc cref="WorkerGroup.InvokeWithStateAsync"/>
    public Task<PolicyAnswer> InvokeWithStateAsync(PolicyInvocation call, CancellationToken ct = default) =>
        WithGroup(DomainOf(call), g => g.InvokeWithStateAsync(call, ct), LongLivedKey(call), call.Load, ct);

    /// <inheritdoc cref="WorkerGroup.InvokeOnceAsync"/>
    public Task<JsonNode?> InvokeOnceAsync(PolicyLoadSpec load, string method, JsonObject arguments, TimeSpan deadline, CancellationToken ct = default) =>
        InvokeOnceAsync(load, method, arguments, deadline, null, null, ct);

    /// <inheritdoc cref="WorkerGroup.InvokeOnceAsync"/>
    public Task<JsonNode?> InvokeOnceAsync(PolicyLoadSpec load, string method, JsonObject arguments, TimeSpan deadline,
        Core.Ports.CallBudget? budget, string? call, CancellationToken ct = default) =>
        InvokeOnceAsync(load, method, arguments, deadline, budget, call, null, ct);

    /// <inheritdoc cref="WorkerGroup.InvokeOnceAsync"/>
    public Task<JsonNode?> InvokeOnceAsync(PolicyLoadSpec load, string method, JsonObject arguments, TimeSpan deadline,
        Core.Ports.CallBudget? budget, string? call, StartCheck? check, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(load);
        return WithGroup(DomainOf(load.RuleId), g => g.InvokeOnceAsync(load, method, arguments, deadline, budget, call, check, ct), load: load, ct: ct);
    }

    /// <summary>
    /// The sha256 of every bundle this pool's live workers created an instance from (they may still import from its
    /// directory): the bundle cache's sweep keeps them.
    /// </summary>
    public IReadOnlySet<string> BundlesInUse()
    {
        List<Group> all;
        lock (gate) all = [.. groups.Values, .. draining];
        var inUse = new HashSet<string>(StringComparer.Ordinal);
        foreach (var group in all) group.Workers.AddBundlesLoaded(inUse);
        return inUse;
    }

    private static string? LongLivedKey(PolicyInvocation call) => call.KeepsWarm ? call.InstanceKey : null;

    private string DomainOf(PolicyInvocation call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return DomainOf(call.Load.RuleId);
    }

    /// <summary>Drops the instance for <paramref name="instanceKey"/> (e.g. a removed function); the next call creates it anew.</summary>
    public async Task ReleaseAsync(string instanceKey, CancellationToken ct = default)
    {
        List<Group> resident;
        lock (gate)
        {
            foreach (var group in groups.Values) group.LongLived.Remove(instanceKey);
            // Only the group the key was routed to holds it; a group that is not resident holds no instance. Only that
            // group is held while the unload waits for its worker (behind the calls in flight there): holding every
            // resident group made each of them look busy meanwhile, and a new policy found none to make room (429).
            resident = [.. groups.Values.Where(g => g.Workers.HasRoute(instanceKey))];
            foreach (var group in resident) group.Users++;
        }
        try
        {
            foreach (var group in resident) await group.Workers.ReleaseAsync(instanceKey, ct);
        }
        finally
        {
            foreach (var group in resident) Release(group);
        }
    }

    /// <summary>
    /// Stops the workers of policy <paramref name="policyName"/> (every version of it: they share a group), for a policy
    /// that was deleted or retired and whose name has no other runnable version. Calls using the group now (running or
    /// waiting for one of its workers) are not cut short: they finish, or are answered by their start check (404 / 410,
    /// the policy was deleted or retired while they waited), and the workers stop when the last of them is done. A new
    /// call of that name meanwhile starts a fresh group. Answers whether there was a group to stop; nothing with
    /// <see cref="WorkerPoolOptions.IsolatePolicies"/> off (one group runs every policy).
    /// </summary>
    public async Task<bool> StopPolicyAsync(string policyName)
    {
        ArgumentException.ThrowIfNullOrEmpty(policyName);
        if (!options.IsolatePolicies) return false;
        Group? idle = null;
        lock (gate)
        {
            if (disposed || !groups.Remove(DomainOf(policyName), out var group)) return false;
            group.Stopping = true;
            if (group.Users == 0) Retire(idle = group);
            else draining.Add(group);
        }
        logger.LogDebug("stopping the workers of policy {Policy}: it was deleted or retired{Later}", policyName, idle is null ? " (once the calls using them are done)" : "");
        if (idle is not null) await idle.Workers.DisposeAsync();
        return true;
    }

    // Counts a group that is leaving into the pool's totals. Called holding gate.
    private void Retire(Group group)
    {
        retiredRoundTrips += group.Workers.RoundTrips;
        retiredBatches += group.Workers.Batches;
        retiredLoadSpecs += group.Workers.LoadSpecsSent;
    }

    /// <summary>Worker round trips made so far (every request frame sent to a worker), for tests and diagnostics.</summary>
    public long RoundTrips => Sum(g => g.RoundTrips, retiredRoundTrips);

    /// <summary>Calls whose frame carried the instance's load spec: the first call of an instance on a worker, and again only after the worker dropped it.</summary>
    public long LoadSpecsSent => Sum(g => g.LoadSpecsSent, retiredLoadSpecs);

    /// <summary>Writes to workers so far: each carries every request that queued for its worker while it was busy.</summary>
    public long Batches => Sum(g => g.Batches, retiredBatches);

    private long Sum(Func<WorkerGroup, long> of, long retired)
    {
        lock (gate) return retired + groups.Values.Concat(draining).Sum(g => of(g.Workers));
    }

    // Runs on the domain's group, which cannot be stopped meanwhile.
    // A kept load spec (a function's, made at deployment) outlives its bundle's directory when the bundle cache removes it
    // (unused for long here, or swept by another process sharing the cache): the instance it creates after a worker crash,
    // recycle or eviction then fails to load. Such a load is tried once more after the bundle is put back; the method never
    // ran, so nothing happens twice. A call that loads, or finds its instance, pays nothing for it: only a failed load
    // asks the bundle source.
    private async Task<T> WithGroup<T>(string domain, Func<WorkerGroup, Task<T>> run, string? longLivedKey = null, PolicyLoadSpec? load = null,
        CancellationToken ct = default)
    {
        PolicyLoadException failed;
        var group = Acquire(domain, longLivedKey);
        try
        {
            return await run(group.Workers);
        }
        catch (PolicyLoadException e) when (load is not null && bundles is not null)
        {
            failed = e;
        }
        finally
        {
            Release(group);
        }
        if (!await bundles!.RestoreAsync(load!.Bundle, ct)) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failed);
        return await WithGroup(domain, run, longLivedKey, load: null, ct);
    }

    // The domain's group, made when missing; it cannot be stopped until Release.
    private Group Acquire(string domain, string? longLivedKey = null)
    {
        Group? evicted = null;
        Group group;
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (!groups.TryGetValue(domain, out group!))
            {
                if (groups.Count >= options.MaxResidentPolicies)
                {
                    evicted = groups.Values.Where(g => g.Users == 0).MinBy(g => g.LastUsed);
                    if (evicted is null)
                        throw Problems.Overloaded($"all {options.MaxResidentPolicies} policies the worker pool keeps resident are busy; retry later", options.RetryAfterSeconds);
                    groups.Remove(groups.First(kv => kv.Value == evicted).Key);
                    Retire(evicted);
                }
                // With isolation, a group starts its first worker and each other one when calls need it: a policy called
                // now and then holds one process. The one shared group starts them all.
                group = new Group(new WorkerGroup(options, logger, warmAll: !options.IsolatePolicies));
                groups[domain] = group;
                PrepareProcess(groups.Count);
            }
            group.Users++;
            if (longLivedKey is not null)
            {
                group.KeepsWarm = true;
                group.LongLived.Add(longLivedKey);
            }
            group.LastUsed = ++clock;
            group.LastUsedAt = Environment.TickCount64;
        }
        if (evicted is not null)
        {
            logger.LogDebug("stopping the workers of an idle policy group to make room for {Domain}", domain);
            WarnIfThrashing(evicted);
            _ = evicted.Workers.DisposeAsync().AsTask();
        }
        return group;
    }

    // A group stopped seconds after its last call will likely be started again soon: every such call then pays for a
    // worker start and an import. Said at most once a minute.
    private void WarnIfThrashing(Group evicted)
    {
        var now = Environment.TickCount64;
        if (now - evicted.LastUsedAt > ThrashWindow.TotalMilliseconds) return;
        var last = Interlocked.Read(ref lastThrashWarning);
        if ((last != 0 && now - last < 60_000) || Interlocked.CompareExchange(ref lastThrashWarning, now, last) != last) return;
        logger.LogWarning("More policies are in use than the {Resident} whose workers stay resident: a policy called {Seconds:0.#} s ago lost its "
            + "workers to make room, and its next call starts them again. Raise PolicyGrid:Runtime:Pool:MaxResidentPolicies",
            options.MaxResidentPolicies, (now - evicted.LastUsedAt) / 1000.0);
    }

    // What the worker processes need of this process, set as groups are made. Each worker with a call out blocks a
    // thread-pool thread on its pipe (see PythonWorker.ExchangeAsync): with a group per policy that is up to Workers
    // threads per resident group, which the thread pool must not have to discover slowly.
    private void PrepareProcess(int residentGroups)
    {
        if (!processPrepared)
        {
            processPrepared = true;
            if (options.ReapOrphans && !ProcessSignals.BecomeSubreaper())
                logger.LogDebug("could not become a child subreaper; orphans of killed workers go to init");
            if (!ProcessSignals.IsRoot && options.HideServerFromWorkers && OperatingSystem.IsLinux() && !ProcessSignals.HideFromSameUser())
                logger.LogWarning("Policy workers run as the server's own uid and the server could not hide its environment and memory from them (prctl PR_SET_DUMPABLE failed)");
        }
        ThreadPool.GetMinThreads(out var minWorkers, out var minIo);
        var wanted = Environment.ProcessorCount + options.Workers * residentGroups;
        if (minWorkers < wanted) ThreadPool.SetMinThreads(wanted, minIo);
    }

    private void Release(Group group)
    {
        lock (gate)
        {
            if (--group.Users > 0 || !group.Stopping || !draining.Remove(group)) return;
            Retire(group);
        }
        _ = group.Workers.DisposeAsync().AsTask();
    }

    public async ValueTask DisposeAsync()
    {
        List<Group> all;
        lock (gate)
        {
            disposed = true;
            all = [.. groups.Values, .. draining];
            groups.Clear();
            draining.Clear();
        }
        if (idleTimer is not null) await idleTimer.DisposeAsync();
        await Task.WhenAll(all.Select(g => g.Workers.DisposeAsync().AsTask()));
    }
}
