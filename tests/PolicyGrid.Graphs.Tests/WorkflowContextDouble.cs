using System.Collections.Concurrent;
using Dapr.Workflow;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// A WorkflowContext that runs activities through a test's delegate and records, in order, when each started
/// and finished, so tests can check what the workflow called, what ran together and what waited for what.
/// </summary>
internal sealed class WorkflowContextDouble(Func<string, object?, Task<object?>> activities) : WorkflowContext
{
    private int _inFlight;

    public ConcurrentQueue<string> Events { get; } = new();
    public ConcurrentQueue<(string Activity, object? Input)> Calls { get; } = new();
    public ConcurrentQueue<TimeSpan> Timers { get; } = new();
    public int PeakInFlight { get; private set; }

    public override string Name => "PolicyGraphWorkflow";
    public override string InstanceId => "test-instance";
    /// <summary>The orchestration's clock: moved on by each timer, and by a test to stand for a slow activity.</summary>
    public DateTime Now { get; set; } = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    public override DateTime CurrentUtcDateTime => Now;
    public override bool IsReplaying => false;

    public override async Task<T> CallActivityAsync<T>(string name, object? input = null, WorkflowTaskOptions? options = null)
    {
        Calls.Enqueue((name, input));
        Events.Enqueue($"start {Describe(input)}");
        lock (this)
        {
            _inFlight++;
            PeakInFlight = Math.Max(PeakInFlight, _inFlight);
        }
        try
        {
            return (T)(await activities(name, input))!;
        }
        finally
        {
            lock (this) _inFlight--;
            Events.Enqueue($"end {Describe(input)}");
        }
    }

    public override Task CallActivityAsync(string name, object? input = null, WorkflowTaskOptions? options = null) =>
        CallActivityAsync<object?>(name, input, options);

    public override Task CreateTimer(TimeSpan delay, CancellationToken cancellationToken = default)
    {
        Timers.Enqueue(delay);
        Now += delay;
        return Task.CompletedTask;
    }

    public override Task CreateTimer(DateTime fireAt, CancellationToken cancellationToken) => CreateTimer(fireAt - CurrentUtcDateTime, cancellationToken);

    public override Task<T> WaitForExternalEventAsync<T>(string eventName, CancellationToken cancellationToken = default) => throw new NotSupportedException();
    public override Task<T> WaitForExternalEventAsync<T>(string eventName, TimeSpan timeout) => throw new NotSupportedException();
    public override void SendEvent(string instanceId, string eventName, object payload) => throw new NotSupportedException();
    public override void SetCustomStatus(object? customStatus) { }
    public override Task<TResult> CallChildWorkflowAsync<TResult>(string workflowName, object? input = null, ChildWorkflowTaskOptions? options = null) => throw new NotSupportedException();
    public override Task CallChildWorkflowAsync(string workflowName, object? input = null, ChildWorkflowTaskOptions? options = null) => throw new NotSupportedException();
    public override ILogger CreateReplaySafeLogger(string categoryName) => NullLogger.Instance;
    public override ILogger CreateReplaySafeLogger(Type type) => NullLogger.Instance;
    public override ILogger CreateReplaySafeLogger<T>() => NullLogger.Instance;
    public override void ContinueAsNew(object? newInput = null, bool preserveUnprocessedEvents = true) => throw new NotSupportedException();
    public override Guid NewGuid() => Guid.NewGuid();
    public override bool IsPatched(string patchName) => true;
    public override PropagatedHistory? GetPropagatedHistory() => null;

    private static string Describe(object? input) => input is PolicyGrid.Dapr.Graphs.NodeCallRequest call ? call.Node : input?.ToString() ?? "";
}
