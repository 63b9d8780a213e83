using System.Globalization;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// How long the caller of a call waits for its answer, counted from when the call arrived here (a node's
/// <c>X-PolicyGrid-Timeout-Ms</c>; relative, because clocks differ between machines). A call still waiting for its turn
/// when the budget has run out is not started: its caller has given up on it, and it would run unseen.
/// </summary>
public sealed class CallBudget
{
    private readonly TimeProvider clock;
    private readonly long arrived;

    /// <param name="wait">How long the caller waits.</param>
    /// <param name="source">Where the budget came from, for the refusal's message (the header and its value).</param>
    public CallBudget(TimeSpan wait, string source, TimeProvider? clock = null)
    {
        this.clock = clock ?? TimeProvider.System;
        arrived = this.clock.GetTimestamp();
        Wait = wait;
        Source = source;
    }

    public TimeSpan Wait { get; }
    public string Source { get; }

    /// <summary>Time since the call arrived.</summary>
    public TimeSpan Elapsed => clock.GetElapsedTime(arrived);

    /// <summary>
    /// Throws 504 <c>policy_timeout</c> when the budget has run out: called where a call is about to start, after it
    /// waited for its turn and before it changes anything.
    /// </summary>
    public void EnsureLeftToStart(string call)
    {
        if (Elapsed >= Wait) throw RanOut(call);
    }

    /// <summary>
    /// The 504 <c>policy_timeout</c> of a call not started because the budget ran out while it waited. A wait that ended
    /// on a timer (the worker pool's) can end a ms or two before this clock says the budget is spent: it is told as the
    /// whole budget, not as a wait shorter than the budget it says was passed.
    /// </summary>
    public PolicyGridException RanOut(string call)
    {
        var waited = Elapsed;
        return new(504, ErrorCodes.PolicyTimeout,
            $"{call} was not started: it waited {Ms(waited < Wait ? Wait : waited)} ms for its turn, past the {Ms(Wait)} ms its caller waits ({Source}), " +
            "so it has no effect");
    }

    private static string Ms(TimeSpan t) => Math.Floor(t.TotalMilliseconds).ToString("0", CultureInfo.InvariantCulture);
}
