using Microsoft.Extensions.Logging;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// A place in the pool that always has (or is starting) one worker process. Instance keys are
/// routed to slots, not processes, so a key keeps its slot across worker replacements.
/// Requests queue here and one drainer at a time feeds them to the worker in batches: whatever
/// queued while the worker was busy goes in one write and comes back in one read, so a busy slot
/// pays one wake-up per batch instead of one per call. Only the drainer touches the worker.
/// </summary>
internal sealed class WorkerSlot
{
    // Kept well under a pipe's 64 KiB so writing a batch never waits for the worker to read it (the worker
    // holds back what its load specs push over, PythonWorker.WriteBatch).
    internal const int MaxBatchBytes = 32 * 1024;
    private const int MaxBatchRequests = 64;

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

    /// <summary>Batches written to this slot's workers so far (requests sent / batches = how much batching saves).</summary>
    public long Batches;
    public int Routes { get; set; }

    /// <summary>The worker if it has started, else null.</summary>
    public PythonWorker? Current => starting is { IsCompletedSuccessfully: true } t ? t.Result : null;

    public Task WarmAsync(CancellationToken ct) => GetWorkerAsync(ct);

    /// <summary>Queues a request for this slot's worker; a drainer is started when none is running.</summary>
    public void Submit(WorkerRequest request)
    {
        lock (queueGate)
        {
            if (stopped)
            {
                FailAll([request]);
                return;
            }
            queued.Enqueue(request);
            if (draining) return;
            draining = true;
        }
        ThreadPool.UnsafeQueueUserWorkItem(static slot => _ = slot.DrainAsync(), this, preferLocal: false);
    }

    private async Task DrainAsync()
    {
        var batch = new List<WorkerRequest>();
        var notStarted = new List<WorkerRequest>();
        while (true)
        {
            lock (queueGate)
            {
                if (stopped)
                {
                    // StopAsync has failed everything queued.
                    draining = false;
                    return;
                }
                var bytes = 0;
                // Requests a dead worker never started go first: they were ahead of everything queued.
                while (batch.Count < MaxBatchRequests && (unstarted.TryPeek(out var next) || queued.TryPeek(out next))
                       && (batch.Count == 0 || bytes + next.Frame.Length <= MaxBatchBytes))
                {
                    if (!unstarted.TryDequeue(out _)) queued.Dequeue();
                    if (!next.TryTake()) continue;
                    batch.Add(next);
                    bytes += next.Frame.Length;
                }
                if (batch.Count == 0)
                {
                    draining = false;
                    return;
                }
            }
            try
            {
                var worker = await GetWorkerAsync(CancellationToken.None);
                Interlocked.Increment(ref Batches);
                await worker.ExchangeAsync(batch, notStarted);
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
                        notStarted.Clear();
                        batch.Clear();
                        continue;
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
            batch.Clear();
            notStarted.Clear();
        }
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
