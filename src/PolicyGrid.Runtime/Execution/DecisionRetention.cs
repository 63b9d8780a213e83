using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Execution;

/// <summary>Prunes the decision log to its configured count and age, in the background.</summary>
internal sealed class DecisionRetention(DecisionLog log, DecisionLogOptions options, TimeProvider time, ILogger<DecisionRetention> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.PruneInterval, time);
        do
        {
            try
            {
                await log.PruneAsync(stoppingToken);
            }
            catch (Exception e) when (e is PolicyGridException or IOException or InvalidOperationException or System.Data.Common.DbException)
            {
                logger.LogWarning(e, "decision log retention failed; will retry");
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
