using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Prunes the decision log to its configured count and age, in the background: at start, every
/// <see cref="DecisionLogOptions.PruneInterval"/>, and sooner whenever a quarter of
/// <see cref="DecisionLogOptions.MaxCount"/> has been written since the last prune, so a busy log stays
/// within about 1.25 x MaxCount instead of growing by a whole interval's calls.
/// </summary>
internal sealed class DecisionRetention(DecisionLog log, DecisionLogOptions options, TimeProvider time, ILogger<DecisionRetention> logger) : BackgroundService
{
    private static readonly TimeSpan CheckEvery = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var growth = Math.Max(1, options.MaxCount / 4);
        // PruneInterval is greater than zero (PolicyRuntimeOptionsValidator, at start).
        using var timer = new PeriodicTimer(options.PruneInterval < CheckEvery ? options.PruneInterval : CheckEvery, time);
        do
        {
            var started = time.GetTimestamp();
            var writtenBefore = log.Written;
            await PruneAsync(stoppingToken);
            // Between prunes only counters are read: a check costs nothing while the log is quiet.
            while (time.GetElapsedTime(started) < options.PruneInterval && log.Written - writtenBefore < growth)
            {
                if (!await timer.WaitForNextTickAsync(stoppingToken)) return;
            }
        }
        while (!stoppingToken.IsCancellationRequested);
    }

    private async Task PruneAsync(CancellationToken ct)
    {
        try
        {
            await log.PruneAsync(ct);
        }
        catch (Exception e) when (e is PolicyGridException or IOException or InvalidOperationException or System.Data.Common.DbException)
        {
            logger.LogWarning(e, "decision log retention failed; will retry");
        }
    }
}
