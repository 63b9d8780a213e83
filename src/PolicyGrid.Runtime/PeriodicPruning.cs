using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime;

/// <summary>
/// A retention sweep run at start and then every <see cref="Interval"/>: a store or disk that fails one sweep is logged
/// and tried again at the next (graph executions, jobs, the bundle cache, the workers of deleted and retired policies).
/// </summary>
public abstract class PeriodicPruning(TimeProvider clock, ILogger logger) : BackgroundService
{
    /// <summary>The clock the sweep runs by and measures ages with.</summary>
    protected TimeProvider Clock { get; } = clock;

    /// <summary>How often the sweep runs.</summary>
    protected abstract TimeSpan Interval { get; }

    /// <summary>What is pruned, for the log ("graph execution", "job", "bundle cache").</summary>
    protected abstract string What { get; }

    /// <summary>Removes what is past the limits now; answers how many records went.</summary>
    public abstract Task<int> PruneAsync(CancellationToken ct);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, Clock);
        do
        {
            try
            {
                await PruneAsync(stoppingToken);
            }
            catch (Exception e) when (e is PolicyGridException or IOException or InvalidOperationException or System.Data.Common.DbException)
            {
                logger.LogWarning(e, "{What} retention failed; will retry", What);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
