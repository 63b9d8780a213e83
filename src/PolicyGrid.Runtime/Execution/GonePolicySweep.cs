using Microsoft.Extensions.Logging;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// At start and every <see cref="Hosting.WorkerPoolOptions.GoneSweepInterval"/>, tears down the policies whose workers
/// run here although they were deleted or retired (<see cref="PolicyTeardown.TearDownGoneAsync"/>). In the Dapr shape the
/// executor and functions apps hear of those from the registry's policy events; one lost kept the workers until
/// <see cref="Hosting.WorkerPoolOptions.IdleStopAfter"/>, and those holding a function's replica for good.
/// </summary>
internal sealed class GonePolicySweep(PolicyTeardown teardown, PolicyRuntimeOptions options, TimeProvider clock, ILogger<GonePolicySweep> logger)
    : PeriodicPruning(clock, logger)
{
    protected override TimeSpan Interval => options.Pool.GoneSweepInterval;

    protected override string What => "deleted and retired policies' worker";

    public override Task<int> PruneAsync(CancellationToken ct) => teardown.TearDownGoneAsync(ct);

    // Zero: never (PolicyRuntimeOptionsValidator refuses less at start).
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Interval > TimeSpan.Zero ? base.ExecuteAsync(stoppingToken) : Task.CompletedTask;
}
