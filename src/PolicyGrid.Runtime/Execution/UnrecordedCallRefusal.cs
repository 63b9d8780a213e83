using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// A call refused before it ran because the decision log cannot record decisions and the operator chose
/// <c>Decisions:WhenUnrecorded=refuse</c>: 503 <c>backend_unavailable</c> with <c>Retry-After</c>. A type of its own
/// because it says nothing about the executor that would have run the call (the executor is not marked down for it, as
/// it is for its other 503s, nor up), and because the decision log already says why, once and then every 30 s: the
/// API does not log each refused call again.
/// </summary>
public sealed class UnrecordedCallRefusal : PolicyGridException
{
    /// <summary>Seconds a refused caller is told to wait: the refused call's own record ends the failure within a commit interval of the store taking it.</summary>
    public const int RetryAfter = 1;

    internal UnrecordedCallRefusal(DecisionLogFailure failing)
        : base(503, ErrorCodes.BackendUnavailable, $"the decision log cannot record decisions since {DecisionLog.FormatTime(failing.Since)}: {failing.LastError}; "
            + $"this executor refuses calls it cannot record (Decisions:WhenUnrecorded={DecisionLogOptions.Refuse})")
    {
        RetryAfterSeconds = RetryAfter;
    }
}
