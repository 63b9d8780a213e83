namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Whether the server's own stop is ending the calls still running (the API's StopGrace, shortly before the host's
/// shutdown timeout ends): such a call is cancelled as if its caller had gone, but its caller is still there and is
/// answered 503 <c>backend_unavailable</c>. Its decision record says that answer (<see cref="AuditTrail"/>), not the 499
/// <c>cancelled</c> of a caller that went away.
/// </summary>
public sealed class ServerStop
{
    private CancellationToken stoppingCalls;

    /// <summary>The host says when its stop ends the calls still running: when <paramref name="stopping"/> fires.</summary>
    public void EndsCallsWhen(CancellationToken stopping) => stoppingCalls = stopping;

    /// <summary>
    /// Fires when the server's stop ends the calls still running: for work that does not stop with its request (a node
    /// call run once for its retries, NodeCallLedger), which the stop must still end while its caller can hear why.
    /// </summary>
    public CancellationToken CallsEnding => stoppingCalls;

    /// <summary>Whether calls still running are being ended by the server's stop (and answered 503).</summary>
    public bool EndingCalls => stoppingCalls.IsCancellationRequested;
}
