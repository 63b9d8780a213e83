using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// Failures the log has already told (or need not tell again): <see cref="ErrorEnvelopeMiddleware"/> answers them
/// without its per-request warning. An executor that is down fails every call sent to it; the log says so once, when
/// it goes down (and once when it is back), not once per call.
/// </summary>
public static class LoggedFailures
{
    private const string Key = "PolicyGrid.LoggedFailure";

    public static T Mark<T>(T failure) where T : Exception
    {
        failure.Data[Key] = true;
        return failure;
    }

    /// <summary>Whether the failure, or one it wraps (a graph node's, a graph run's), has been told already.</summary>
    public static bool IsMarked(Exception failure)
    {
        for (Exception? e = failure; e is not null; e = e.InnerException)
            // A call the decision log cannot record: the log says so once, then counts, where a line per refused call would bury it.
            if (e.Data.Contains(Key) || e is UnrecordedCallRefusal) return true;
        return false;
    }
}
