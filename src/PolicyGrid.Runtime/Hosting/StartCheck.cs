namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// What the layer above the pool says about whether a call may still start once it has waited for its worker: the pool
/// knows instance keys and load specs, not policies, so it cannot tell that the call's policy was retired or deleted
/// while the call was queued (behind a busy worker, up to <see cref="WorkerPoolOptions.QueueWait"/>). A request that
/// waited asks <see cref="StillHolds"/> when it is taken from its slot's queue; only when that is false is
/// <see cref="RecheckAsync"/> awaited, and a request it answers an error for is failed with it and never sent. Calls that
/// did not wait, and calls without a check, are not asked. One object serves many calls (one per stored policy
/// revision, one per function): the pool adds nothing per call.
/// </summary>
public abstract class StartCheck
{
    /// <summary>
    /// True when nothing that could stop the call has changed since it was checked (e.g. no policy was written since):
    /// it then starts without <see cref="RecheckAsync"/>. Called by a slot's drainer under its queue lock: it must not
    /// allocate, lock, block or throw.
    /// </summary>
    public abstract bool StillHolds { get; }

    /// <summary>Checks again (off the hot path: a store read): null when the call may start, else the error it fails with (it did not run).</summary>
    public abstract Task<Exception?> RecheckAsync();
}
