using Microsoft.Extensions.Logging;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Runtime.Bundles;

/// <summary>
/// Keeps the bundle cache bounded: at start and every <see cref="BundleCache.MarkEvery"/> it marks the bundles this
/// process's workers created instances from as used (so every process sharing the cache directory sees them in use, however
/// long ago they were resolved: a function's load spec is resolved once, at deployment), then removes the entries no process
/// used for <see cref="BundleCacheOptions.KeepUnusedFor"/> (<see cref="BundleCache.Prune"/>). Before, every bundle ever
/// called, dry-loaded or run as a job stayed unpacked for good, with its requirements' site-packages.
/// </summary>
/// <param name="removes">False in a process that must only keep its own bundles marked (a local job's process).</param>
public sealed class BundleCachePruning(BundleCache cache, PythonWorkerPool pool, TimeProvider clock, ILogger<BundleCachePruning> logger, bool removes = true)
    : PeriodicPruning(clock, logger)
{
    protected override TimeSpan Interval => cache.MarkEvery;

    protected override string What => "bundle cache";

    /// <summary>Marks the bundles in use here, then removes the unused ones; answers how many entries went.</summary>
    public override Task<int> PruneAsync(CancellationToken ct)
    {
        var inUse = pool.BundlesInUse();
        foreach (var sha in inUse) cache.MarkUsed(sha);
        if (!removes) return Task.FromResult(0);
        try
        {
            return Task.FromResult(cache.Prune(inUse, Clock.GetUtcNow()));
        }
        catch (UnauthorizedAccessException e)
        {
            // Not a failure the base retries on its own; the directory's permissions may be mended meanwhile.
            logger.LogWarning(e, "bundle cache retention could not read {Directory}; will retry", cache.CacheDirectory);
            return Task.FromResult(0);
        }
    }
}
