using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// Writes a record that must not be lost (how a job or a graph execution ended) until the store takes it: a store that
/// refuses (a full disk, a store or sidecar down) is tried again 1 s later, then twice as long each time up to
/// <see cref="LongestWait"/>, until the write lands or <c>stopping</c> is signalled. A refusal that waiting cannot cure
/// (a 4xx: the record is gone, a revision conflict) ends it at once, thrown.
/// </summary>
public static class UntilStored
{
    public static readonly TimeSpan FirstWait = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan LongestWait = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Runs <paramref name="write"/> until it succeeds; <paramref name="refused"/> hears the first failure (to log it,
    /// once) and <paramref name="storedAfterRefusal"/> the success that follows one. False when stopped before it landed.
    /// </summary>
    public static async Task<bool> WriteAsync(Func<Task> write, Action<Exception> refused, Action storedAfterRefusal, TimeProvider clock,
        CancellationToken stopping)
    {
        ArgumentNullException.ThrowIfNull(write);
        var wait = FirstWait;
        var failed = false;
        while (true)
        {
            try
            {
                await write();
                if (failed) storedAfterRefusal();
                return true;
            }
            catch (Exception e) when (e is not (OperationCanceledException or PolicyGridException { Status: < 500 }) && !stopping.IsCancellationRequested)
            {
                if (!failed) refused(e);
                failed = true;
                try { await Task.Delay(wait, clock, stopping); }
                catch (OperationCanceledException) { return false; }
                wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, LongestWait.Ticks));
            }
        }
    }
}
