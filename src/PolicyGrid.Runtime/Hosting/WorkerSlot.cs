using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// A place in the pool that always has (or is starting) one worker process. Instance keys are
/// routed to slots, not processes, so a key keeps its slot across worker replacements.
/// Requests queue here and one drainer at a time feeds them to the worker in batches: whatever
/// queued while the worker was busy goes in one write and comes back in one read, so a busy slot
/// pays one wake-up per batch instead of one per call. Only the drainer touches the worker.
/// </summary>
/// <remarks>
/// The drainer is a thread of the slot's own, not the thread pool's: it blocks in pipe reads while
/// the worker runs (see <see cref="PythonWorker.ExchangeAsync"/>), and thread-pool threads that
/// block make the pool add threads that then spin and preempt each other for work. Measured on the
/// Type 2 bench (2 CPUs, 16 clients): 12-19% more requests per second, 9-15% less CPU per request.
/// The thread ends after <see cref="IdleThreadLifetime"/> without work, so idle slots hold none.
/// </remarks>
internal sealed class WorkerSlot
{
    // Kept well under a pipe's 64 KiB so writing a batch never waits for the worker to read it (the worker
    // holds back what its load specs push over, PythonWorker.WriteBatch).
    internal const int MaxBatchBytes = 32 * 1024;
    internal const int MaxBatchRequests = 64;

    private readonly WorkerLaunch launch;
    private readonly ILogger logger;
    private readonly Lock queueGate = new();
    private readonly Queue<WorkerRequest> queued = new();
    private readonly Queue<WorkerRequest> unstarted = new();
    private bool draining;
    private bool stopped;
    private Task<PythonWorker>? starting;

    public WorkerSlot(int index, WorkerLaunch launch, ILogger logger, PythonWorker? running)
    {
        Index = index;
        this.launch = launch;
        this.logger = logger;
        if (running is not null) starting = Task.FromResult(running);
    }

    public int Index { get; }
    public int InFlight;

    /// <summary>Requests waiting in this slot's queue (not yet sent to its worker).</summary>
    public int Queued
    {
        get
        {
            lock (queueGate) return queued.Count + unstarted.Count;
        }
    }

    /// <summary>Batches written to this slot's workers so far (requests sent / batches = how much batching saves).</summary>
    public long Batches;
    public int Routes { get; set; }

    /// <summary>Calls reserved here whose length is unknown or long (see <see cref="CanJoin"/>); kept by PythonWorkerPool.</summary>
    public int SlowInFlight;

    // What PythonWorkerPool weighs before it queues a short call here rather than on an idle worker (see CanJoin):
    // how much of a CPU the worker's Python process used lately (per mille, sampled after batches at least 50 ms
    // apart; unknown counts as busy) and, while a batch is out, since when the worker has been on its current call.
    // Written by the drainer, read without a lock: a stale read makes one choice worse, no more.
    private static readonly long SampleTicks = Stopwatch.Frequency / 20;
    private int cpuPermille = 1000;
    private long batchStarted;
    private PythonWorker? busyWorker;
    private PythonWorker? sampledWorker;
    private long sampledAt;
    private TimeSpan sampledCpu;

    /// <summary>Whether a short call may queue here (see <see cref="CanJoin"/>).</summary>
    public bool Joinable(int maxCpuPermille, long stallTicks, long now)
    {
        var onCall = Volatile.Read(ref busyWorker) is { } worker
            ? now - Math.Max(Volatile.Read(ref batchStarted), worker.LastAnswered)
            : 0;
        return CanJoin(Volatile.Read(ref InFlight), Volatile.Read(ref SlowInFlight), Volatile.Read(ref cpuPermille), onCall, maxCpuPermille, stallTicks);
    }

    /// <summary>
    /// A short call joins a busy worker's queue only when nothing there is long or of unknown length, the worker has
    /// not been on its current call for longer than <paramref name="stallTicks"/> (a call that was short until now),
    /// the queue is shorter than a batch, and the worker's process used less than <paramref name="maxCpuPermille"/>
    /// of a CPU lately (a worker near a full CPU gains nothing from more calls while others idle).
    /// </summary>
    internal static bool CanJoin(int inFlight, int slowInFlight, int cpuPermille, long onCallTicks, int maxCpuPermille, long stallTicks) =>
        inFlight > 0 && inFlight < MaxBatchRequests && slowInFlight == 0
        && onCallTicks <= stallTicks
        && cpuPermille < maxCpuPermille;

    // After a batch, at most every 50 ms: the worker's share of a CPU since the last sample.
    private void SampleCpu(PythonWorker worker)
    {
        var now = Stopwatch.GetTimestamp();
        if (now - sampledAt < SampleTicks && worker == sampledWorker) return;
        if (worker.CpuTime is not { } cpu) return;
        if (worker == sampledWorker)
        {
            var share = (cpu - sampledCpu).TotalSeconds / ((double)(now - sampledAt) / Stopwatch.Frequency);
            var permille = (int)Math.Clamp(share * 1000, 0, 1000);
            Volatile.Write(ref cpuPermille, (cpuPermille + permille) / 2);
        }
        (sampledWorker, sampledAt, sampledCpu) = (worker, now, cpu);
    }

    /// <summary>The worker if it has started, else null.</summary>
    public PythonWorker? Current => starting is { IsCompletedSuccessfully: true } t ? t.Result : null;

    public Task WarmAsync(CancellationToken ct) => GetWorkerAsync(ct);

    /// <summary>
    /// Queues a request for this slot's worker; a drainer is started when none is running. With
    /// <paramref name="mayRunHere"/> (a call known to be short, for an instance this worker holds) a request that finds
    /// the slot idle is sent and answered on the calling thread, before this returns.
    /// </summary>
    /// <remarks>
    /// An idle slot's call otherwise pays two thread hand-offs, to the drainer and back to the pool, each a wake-up
    /// that costs more than the policy on a loaded machine. The caller holds the slot as its drainer for that one
    /// request; whatever queues meanwhile goes to the drainer thread afterwards, so the caller never waits on others.
    /// </remarks>
    public void Submit(WorkerRequest request, bool mayRunHere = false)
    {
        lock (queueGate)
        {
            if (stopped)
            {
                FailAll([request]);
                return;
            }
            queued.Enqueue(request);
            if (draining)
            {
                // Behind a busy drainer: by the time it is taken, its call's StartCheck may no longer hold.
                request.Waited = true;
                return;
            }
            draining = true;
        }
        if (mayRunHere && Current is { } worker && worker.Holds(request) && worker.IsAlive)
        {
            var sent = DrainOnceAsync(inlineBatch, inlineNotStarted);
            if (sent.IsCompletedSuccessfully) AfterInline(sent.Result);
            else sent.ContinueWith(static (t, slot) => ((WorkerSlot)slot!).AfterInline(t.Result), this,
                CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            return;
        }
        WakeDrainer();
    }

    // Only the slot's current drainer (who set `draining`) uses these: a caller sending its own request, at most one at a time.
    private readonly List<WorkerRequest> inlineBatch = [];
    private readonly List<WorkerRequest> inlineNotStarted = [];

    // After a batch a caller sent itself: the drainer thread takes over what queued meanwhile, if anything did.
    private void AfterInline(bool sent)
    {
        inlineBatch.Clear();
        inlineNotStarted.Clear();
        if (!sent) return; // nothing was taken, and `draining` was cleared with the queue empty
        lock (queueGate)
        {
            if (queued.Count == 0 && unstarted.Count == 0)
            {
                draining = false;
                return;
            }
        }
        WakeDrainer();
    }

    private void WakeDrainer()
    {
        lock (wakeGate)
        {
            wakePending = true;
            if (drainerThread is not null)
            {
                Monitor.Pulse(wakeGate);
                return;
            }
            drainerThread = new Thread(static slot => ((WorkerSlot)slot!).DrainerLoop())
            {
                IsBackground = true,
                Name = $"policy slot {Index}",
            };
            drainerThread.Start(this);
        }
    }

    internal static readonly TimeSpan IdleThreadLifetime = TimeSpan.FromSeconds(30);
    private readonly object wakeGate = new();
    private bool wakePending;
    private Thread? drainerThread;

    /// <summary>The drainer thread while it lives (tests: it is the slot's own, and it ends).</summary>
    internal Thread? DrainerThread
    {
        get { lock (wakeGate) return drainerThread; }
    }

    private void DrainerLoop()
    {
        var batch = new List<WorkerRequest>();
        var notStarted = new List<WorkerRequest>();
        while (true)
        {
            lock (wakeGate)
            {
                while (!wakePending)
                {
                    if (Volatile.Read(ref stopped) || (!Monitor.Wait(wakeGate, IdleThreadLifetime) && !wakePending))
                    {
                        drainerThread = null;
                        return;
                    }
                }
                wakePending = false;
            }
            // One batch per call: when a batch does have to wait (a worker starting, one being killed), the
            // rest of it runs on the thread pool and the next batch is back on this thread.
            while (DrainOnceAsync(batch, notStarted).GetAwaiter().GetResult())
            {
                batch.Clear();
                notStarted.Clear();
            }
        }
    }

    // Sends one batch of what is queued; false when nothing was (the drainer then sleeps until the next Submit).
    private async Task<bool> DrainOnceAsync(List<WorkerRequest> batch, List<WorkerRequest> notStarted)
    {
        var recheck = false;
        lock (queueGate)
        {
            if (stopped)
            {
                // StopAsync has failed everything queued.
                draining = false;
                return false;
            }
            var bytes = 0;
            // Requests a dead worker never started go first: they were ahead of everything queued.
            while (batch.Count < MaxBatchRequests && (unstarted.TryPeek(out var next) || queued.TryPeek(out next))
                   && (batch.Count == 0 || bytes + next.Frame.Length <= MaxBatchBytes))
            {
                if (!unstarted.TryDequeue(out _)) queued.Dequeue();
                if (!next.TryTake()) continue;
                if (next.StartBy != 0 && next.TooLateToStart(Stopwatch.GetTimestamp()))
                {
                    // Its caller's budget ran out while it waited here (its caller is answered at that moment, and
                    // abandons it, unless the two met just now): it is not sent, so it never runs.
                    next.Fail(next.NotStarted());
                    continue;
                }
                batch.Add(next);
                bytes += next.Frame.Length;
                recheck |= next.NeedsRecheck;
            }
            if (batch.Count == 0)
            {
                draining = false;
                return false;
            }
        }
        // Something changed while a request waited here (a policy was written): its caller checks again that it may
        // start (its policy not retired or deleted meanwhile); one that may not is failed now and never sent.
        if (recheck)
        {
            var left = await RecheckAsync(batch);
            if (Volatile.Read(ref stopped))
            {
                // Stopped while it checked: no worker is started for the batch (the next round sees `stopped` and ends).
                FailAll(batch);
                return true;
            }
            if (!left) return true;
        }
        try
        {
            var worker = await GetWorkerAsync(CancellationToken.None);
            Interlocked.Increment(ref Batches);
            Volatile.Write(ref batchStarted, Stopwatch.GetTimestamp());
            Volatile.Write(ref busyWorker, worker);
            try
            {
                await worker.ExchangeAsync(batch, notStarted);
            }
            finally
            {
                Volatile.Write(ref busyWorker, null);
            }
            SampleCpu(worker);
            if (!worker.IsAlive && !Volatile.Read(ref stopped)) Replace();
        }
        catch (Exception e)
        {
            // Nothing may escape the drainer: whoever waits on the batch hears what went wrong.
            if (e is not Core.Errors.PolicyGridException) logger.LogError(e, "policy worker {Slot} failed a batch", Index);
            foreach (var request in batch) request.Fail(e);
            notStarted.Clear(); // failed with the batch: none of it may run later
        }
        if (notStarted.Count > 0)
        {
            lock (queueGate)
            {
                if (stopped)
                {
                    // What a stopped worker never started fails like the rest of the queue.
                    FailAll(notStarted);
                    return true;
                }
                var later = unstarted.ToList();
                unstarted.Clear();
                foreach (var request in notStarted.Concat(later))
                {
                    request.Requeue();
                    unstarted.Enqueue(request);
                }
            }
        }
        return true;
    }

    // Asks each distinct StartCheck of the batch's waited requests once; fails and drops the requests it refuses. False
    // when none is left to send.
    private async Task<bool> RecheckAsync(List<WorkerRequest> batch)
    {
        Dictionary<StartCheck, Exception?> answers = new(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < batch.Count; i++)
        {
            var request = batch[i];
            if (!request.NeedsRecheck) continue;
            var check = request.Check!;
            if (!answers.TryGetValue(check, out var refusal))
            {
                try
                {
                    refusal = await check.RecheckAsync();
                }
                catch (Exception e)
                {
                    // Whether it may start is unknown: it is not sent, and its caller hears why.
                    if (e is not Core.Errors.PolicyGridException) logger.LogError(e, "policy worker {Slot} could not check a queued call again", Index);
                    refusal = e;
                }
                answers[check] = refusal;
            }
            if (refusal is null) continue;
            request.Fail(refusal);
            batch.RemoveAt(i--);
        }
        return batch.Count > 0;
    }

    private static void FailAll(IEnumerable<WorkerRequest> requests)
    {
        foreach (var request in requests.ToList()) request.Fail(new ObjectDisposedException(nameof(PythonWorkerPool), "the policy worker pool is shutting down"));
    }

    /// <summary>The live worker, starting one when the last was replaced or never started. Only the drainer (or the pool before it is shared) calls it.</summary>
    public async Task<PythonWorker> GetWorkerAsync(CancellationToken ct)
    {
        var current = starting;
        if (current is { IsCompletedSuccessfully: true } && current.Result.IsAlive) return current.Result;
        if (current is null || current.IsFaulted || current.IsCanceled || (current.IsCompletedSuccessfully && !current.Result.IsAlive))
        {
            if (current is { IsCompletedSuccessfully: true }) await current.Result.KillAsync();
            current = starting = PythonWorker.StartAsync(launch, logger, CancellationToken.None);
        }
        try
        {
            return await current.WaitAsync(ct);
        }
        catch (WorkerStartException e)
        {
            throw Core.Errors.Problems.BackendUnavailable($"policy worker {Index} could not start: {e.Message}");
        }
    }

    /// <summary>Kills the current worker and starts its replacement in the background, so the next call finds it warm.</summary>
    public void Replace()
    {
        var old = starting;
        starting = Task.Run(async () =>
        {
            if (old is { IsCompletedSuccessfully: true }) await old.Result.KillAsync();
            return await PythonWorker.StartAsync(launch, logger, CancellationToken.None);
        });
        starting.ContinueWith(t => logger.LogError(t.Exception, "replacement policy worker {Slot} failed to start", Index),
            CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
    }

    public async Task StopAsync()
    {
        lock (queueGate)
        {
            stopped = true;
            FailAll(unstarted.Concat(queued).Where(r => r.TryTake()));
            unstarted.Clear();
            queued.Clear();
        }
        lock (wakeGate) Monitor.PulseAll(wakeGate); // an idle drainer thread ends now, not after IdleThreadLifetime
        var current = starting;
        starting = null;
        if (current is null) return;
        try
        {
            var worker = await current;
            await worker.KillAsync();
        }
        catch (WorkerStartException) { }
    }
}
