using System.Diagnostics;

namespace PolicyGrid.TestSupport;

/// <summary>
/// The clock of a test's <see cref="Core.Ports.CallBudget"/>: still until <see cref="Start"/>, then real time from there. A
/// budgeted call is whole when it reaches the worker pool (which turns what is left of it into an instant on the real
/// clock), however long a loaded machine took to get it there; the test starts the clock once it sees the call queued.
/// </summary>
public sealed class BudgetClock : TimeProvider
{
    private long started; // Stopwatch timestamp of Start(); 0 while still

    public override long TimestampFrequency => Stopwatch.Frequency;

    public override long GetTimestamp() => Volatile.Read(ref started) is var from and not 0 ? Stopwatch.GetTimestamp() - from : 0;

    public void Start() => Volatile.Write(ref started, Stopwatch.GetTimestamp());
}
