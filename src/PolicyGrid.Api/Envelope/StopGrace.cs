using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// When the server stops (SIGTERM, Ctrl+C, ...), calls in flight get the host's shutdown timeout to finish; the host then
/// closes the connections of those still running, and their callers got no answer at all. <see cref="RunningOut"/> fires
/// a little before that (<see cref="Margin"/>): <see cref="ErrorEnvelopeMiddleware"/> then stops each call still running
/// (its request's cancellation, as if its caller had gone: a policy worker running it is stopped) and answers it 503
/// <c>backend_unavailable</c> saying the server is stopping, while the connection can still carry that answer.
/// </summary>
public sealed class StopGrace : IDisposable
{
    private readonly CancellationTokenSource runningOut = new();
    private readonly CancellationTokenRegistration stopping;
    private long stopBegan;

    public StopGrace(IHostApplicationLifetime lifetime, IOptions<HostOptions> host, ServerStop? serverStop = null)
    {
        ShutdownTimeout = host.Value.ShutdownTimeout;
        // The decision log records a call this ends as the 503 its caller hears, not as a caller that went (499).
        serverStop?.EndsCallsWhen(runningOut.Token);
        stopping = lifetime.ApplicationStopping.Register(() =>
        {
            Interlocked.Exchange(ref stopBegan, TimeProvider.System.GetTimestamp());
            var answerAt = ShutdownTimeout - Margin(ShutdownTimeout);
            if (answerAt <= TimeSpan.Zero) runningOut.Cancel();
            else runningOut.CancelAfter(answerAt);
        });
    }

    /// <summary>How long the host gives calls in flight once it stops (<c>--shutdownTimeoutSeconds</c>).</summary>
    public TimeSpan ShutdownTimeout { get; }

    /// <summary>Fires when calls still running are to be stopped and answered, shortly before the host gives up on them.</summary>
    public CancellationToken RunningOut => runningOut.Token;

    /// <summary>Whether the stop's grace has run out.</summary>
    public bool RanOut => runningOut.IsCancellationRequested;

    /// <summary>
    /// Time kept back for stopping a call (a policy worker is killed) and writing its answer before the host closes its
    /// connection: a quarter of the shutdown timeout, at most 5 s. Stopping a call kills its policy worker and sweeps up
    /// what it left, which on a loaded machine took longer than the 1 s first kept back: the host closed the connection
    /// before the answer was written.
    /// </summary>
    public static TimeSpan Margin(TimeSpan shutdownTimeout) =>
        shutdownTimeout <= TimeSpan.Zero ? TimeSpan.Zero : TimeSpan.FromTicks(Math.Min(shutdownTimeout.Ticks / 4, 5 * TimeSpan.TicksPerSecond));

    /// <summary>
    /// Makes <paramref name="context"/>'s <see cref="HttpContext.RequestAborted"/> fire also when the grace runs out, so
    /// every handler and call that observes it stops; answers what undoes that (the caller's own token is kept by the caller).
    /// </summary>
    public IDisposable? Bind(HttpContext context)
    {
        if (RanOut) return null; // the host is closing connections: nothing can be answered on a new call now either
        var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, runningOut.Token);
        context.RequestAborted = linked.Token;
        return linked;
    }

    /// <summary>What a call still running when the grace ran out hears.</summary>
    public string Message(HttpContext context)
    {
        var began = Interlocked.Read(ref stopBegan);
        var after = began == 0 ? ShutdownTimeout : TimeProvider.System.GetElapsedTime(began);
        var seconds = after.TotalSeconds.ToString("0.#", System.Globalization.CultureInfo.InvariantCulture);
        var timeout = ShutdownTimeout.TotalSeconds.ToString("0.#", System.Globalization.CultureInfo.InvariantCulture);
        var reading = HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method);
        return reading
            ? $"the server is stopping: this request was still being answered {seconds} s after the stop began (the server gives calls in flight " +
              $"{timeout} s, --shutdownTimeoutSeconds), so it was stopped without its answer; retry it once the server is running again"
            : $"the server is stopping: this call was still running {seconds} s after the stop began (the server gives calls in flight " +
              $"{timeout} s, --shutdownTimeoutSeconds), so it was stopped without its answer; it may have had effects (its policy may have " +
              "run, in part or in full): check before retrying it once the server is running again";
    }

    public void Dispose()
    {
        stopping.Dispose();
        runningOut.Dispose();
    }
}
