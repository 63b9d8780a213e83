using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Transports;

namespace PolicyGrid.Api.Executors;

/// <summary>
/// What the log says about executors that are down, for every kind of work sent to them (Type 2 calls, function calls and
/// management, jobs followed on a node): one warning when an executor is found down (or first found down after a start),
/// one line when it answers again, nothing for the calls in between — a down node fails every call sent to it, and a
/// line per call buried everything else. Keyed by executor id, so Type 2 calls, functions and jobs on one node share it.
/// </summary>
public sealed class ExecutorOutages(ILogger<ExecutorOutages> logger)
{
    private readonly ConcurrentDictionary<string, byte> down = new(StringComparer.Ordinal);

    /// <summary>
    /// A failure that means the executor could not be reached (or dropped the call), not its verdict on the call. A call
    /// refused because this server's decision log cannot record it is neither: it says nothing about the executor.
    /// </summary>
    public static bool IsOutage(PolicyGridException e) =>
        e.Status == 503 && e.Code == ErrorCodes.BackendUnavailable && e is not NodeUnavailable and not UnrecordedCallRefusal;

    /// <summary>
    /// The executor's own verdict on a call (any 4xx, the policy's deadline, or its own 503 saying what it lacks now):
    /// it is up, whatever it thought of the call.
    /// </summary>
    public static bool AnsweredByExecutor(PolicyGridException e) =>
        e.Status is >= 400 and < 500 || (e.Status == 504 && e.Code == ErrorCodes.PolicyTimeout) || e is NodeUnavailable;

    /// <summary>
    /// Records that <paramref name="executorId"/> is down; logs it only when it was not known to be. <paramref name="meanwhile"/>
    /// says what its callers get until it is back (e.g. "its calls answer 503 at once").
    /// </summary>
    public void Down(string executorId, string reason, string meanwhile)
    {
        if (down.TryAdd(executorId, 0))
            logger.LogWarning("executor {ExecutorId} is down{Meanwhile}: {Reason}", executorId, meanwhile, reason);
    }

    /// <summary>Whether any executor is known to be down (an answer can then change something).</summary>
    public bool AnyDown => !down.IsEmpty;

    /// <summary>Records that <paramref name="executorId"/> answered; logs it when it was known to be down (or when <paramref name="changed"/>).</summary>
    public void Up(string executorId, string what = "", bool changed = false)
    {
        if (down.TryRemove(executorId, out _) || changed)
            logger.LogInformation("executor {ExecutorId} answers again{What}", executorId, what);
    }

    /// <summary>
    /// Runs one call to <paramref name="executorId"/>: an outage is logged once (the failure is marked as told, so the
    /// request's own warning is left out) and an answer after one is logged once. Used where no executor status is kept.
    /// </summary>
    public async Task<T> WatchAsync<T>(string executorId, string meanwhile, Func<Task<T>> call)
    {
        T result;
        try
        {
            result = await call();
        }
        catch (PolicyGridException e) when (IsOutage(e))
        {
            Down(executorId, e.Message, meanwhile);
            LoggedFailures.Mark(e);
            throw;
        }
        catch (PolicyGridException e) when (AnsweredByExecutor(e))
        {
            Up(executorId);
            throw;
        }
        Up(executorId);
        return result;
    }
}
