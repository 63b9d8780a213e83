using System.Diagnostics;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// One request frame on its way to a worker slot, and the caller's wait for its reply. A request is
/// queued, then taken into a batch and sent; a caller that gives up (its token, or the queue wait)
/// while it is still queued abandons it and it is never sent. Once sent, only the slot's drainer
/// settles it: the worker's reply, the error its worker died of, or back to the queue when the
/// worker died before the request started.
/// </summary>
internal sealed class WorkerRequest(ReadOnlyMemory<byte> frame, string policy, TimeSpan deadline, CancellationToken ct)
{
    /// <summary>
    /// The instance key (as this pool names it, one per worker) whose load spec <see cref="LoadJson"/> goes along
    /// only when the worker process has not been sent it yet; null when the frame carries everything it needs.
    /// </summary>
    public string? LoadKey { get; init; }

    /// <summary>
    /// The instance key an <c>unload</c> frame drops: the worker process no longer has its load spec, so the key's next
    /// call carries it (rather than being answered need_load and sent again).
    /// </summary>
    public string? Unloads { get; init; }

    /// <summary>The <c>load</c> object's JSON, spliced into the frame for a worker that lacks the instance.</summary>
    public ReadOnlyMemory<byte> LoadJson { get; init; }

    /// <summary>State for <c>set_state</c> if the instance has to be created: spliced in with the load spec.</summary>
    public JsonObject? RestoreState { get; init; }

    /// <summary>The <c>load</c> (and <c>restore_state</c>) properties as spliced into the frame, written when first needed.</summary>
    public byte[]? Splice { get; set; }

    /// <summary>Set by the drainer when the frame went with its load spec spliced in.</summary>
    public bool CarriedLoad { get; set; }

    /// <summary>
    /// The <see cref="Stopwatch"/> timestamp past which this request must not start (its caller's
    /// <see cref="PolicyInvocation.Budget"/> runs out then); 0 when it has no such limit. The drainer drops it when it is
    /// still queued then, and the host answers <c>not_started</c> when the worker reaches it later (the frame's
    /// <c>start_by</c>, the same instant on the monotonic clock both read).
    /// </summary>
    public long StartBy { get; init; }

    /// <summary>The budgeted call (set with <see cref="StartBy"/>), for <see cref="NotStarted"/>.</summary>
    public PolicyInvocation? Budgeted { get; init; }

    /// <summary>Whether <see cref="StartBy"/> has passed at <paramref name="now"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public bool TooLateToStart(long now) => StartBy != 0 && now >= StartBy;

    /// <summary>The 504 <c>policy_timeout</c> of this request not started because its caller's budget ran out.</summary>
    public PolicyGridException NotStarted() =>
        Budgeted?.Budget?.RanOut(Budgeted.Describe())
        ?? Problems.PolicyTimeout($"call of policy {Policy} was not started: its caller's wait ran out before its worker got to it, so it has no effect");

    /// <summary>
    /// Whether the call may still start once it waited here (its policy not retired meanwhile, <see cref="StartCheck"/>);
    /// null when nothing above the pool asks.
    /// </summary>
    public StartCheck? Check { get; init; }

    /// <summary>
    /// Set (under the slot's queue lock) when the request queued behind a busy drainer, or went back to the queue after
    /// its worker died: only such a request asks its <see cref="Check"/> before it is sent.
    /// </summary>
    public bool Waited;

    /// <summary>Whether this request must ask its <see cref="Check"/> again before it is sent (it waited, and something may have changed).</summary>
    public bool NeedsRecheck => Waited && Check is { StillHolds: false };

    /// <summary>How long the worker spent on this request (Stopwatch ticks from when it could start it to its answer or failure); -1 until then.</summary>
    public long ServiceTicks { get; set; } = -1;

    private const int Queued = 0, Sent = 1, Abandoned = 2;
    private int state;
    private readonly TaskCompletionSource<JsonObject> reply = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ReadOnlyMemory<byte> Frame { get; } = frame;
    public string Policy { get; } = policy;
    public TimeSpan Deadline { get; } = deadline;
    public CancellationToken Ct { get; } = ct;
    public Task<JsonObject> Reply => reply.Task;

    /// <summary>The drainer takes the request into a batch; false when its caller already gave up.</summary>
    public bool TryTake() => Interlocked.CompareExchange(ref state, Sent, Queued) == Queued;

    /// <summary>The worker died before this request started: it goes back to the queue as if never sent.</summary>
    public void Requeue()
    {
        Waited = true;
        Volatile.Write(ref state, Queued);
    }

    /// <summary>The caller gives up; true only while the request is still queued (so it will never run).</summary>
    public bool TryAbandon() => Interlocked.CompareExchange(ref state, Abandoned, Queued) == Queued;

    public void Answer(JsonObject value) => reply.TrySetResult(value);

    public void Fail(Exception error) => reply.TrySetException(error);
}
