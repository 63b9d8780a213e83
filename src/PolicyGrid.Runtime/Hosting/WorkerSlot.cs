using Microsoft.Extensions.Logging;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// A place in the pool that always has (or is starting) one worker process. Instance keys are
/// routed to slots, not processes, so a key keeps its slot across worker replacements. All use
/// of the worker happens while holding <see cref="Gate"/>.
/// </summary>
internal sealed class WorkerSlot
{
    private readonly WorkerLaunch launch;
    private readonly ILogger logger;
    private Task<PythonWorker>? starting;

    public WorkerSlot(int index, WorkerLaunch launch, ILogger logger, PythonWorker? running)
    {
        Index = index;
        this.launch = launch;
        this.logger = logger;
        if (running is not null) starting = Task.FromResult(running);
    }

    public int Index { get; }
    public SemaphoreSlim Gate { get; } = new(1, 1);
    public int InFlight;
    public int Routes { get; set; }

    /// <summary>The worker if it has started, else null.</summary>
    public PythonWorker? Current => starting is { IsCompletedSuccessfully: true } t ? t.Result : null;

    public Task WarmAsync(CancellationToken ct) => GetWorkerAsync(ct);

    /// <summary>The live worker, starting one when the last was replaced or never started. Call holding <see cref="Gate"/> (or before the pool is shared).</summary>
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
