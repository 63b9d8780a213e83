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

    public static bool IsMarked(Exception failure) => failure.Data.Contains(Key);
}
