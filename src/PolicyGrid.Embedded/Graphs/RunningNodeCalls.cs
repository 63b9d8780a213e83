using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Embedded.Graphs;

/// <summary>
/// The graph nodes' function calls under way in this process, for the server's stop. A run stops waiting for a node's
/// call when it is cancelled (its deadline, a DELETE, a failing node, the server's stop: <see cref="LocalGraphRunner"/>),
/// so that a policy ignoring cancellation cannot hold the graph's answer; the call runs on until its worker is stopped
/// and records its decision then. The server's stop used to go on without it: the decision log closed (and
/// <c>serve</c>'s process ended) before the call had recorded itself, and its decision was lost. The stop now waits for
/// the calls of cancelled runs, within the host's shutdown timeout, before anything it stops later (the worker pool, and
/// the decision log last of all), and names every call it gave up on.
/// </summary>
public sealed class RunningNodeCalls(ILogger<RunningNodeCalls> logger) : IHostedService
{
    private readonly ConcurrentDictionary<Task, (string Name, CancellationToken Run)> calls = new();

    /// <summary>
    /// Keeps <paramref name="call"/> until it ends, named by <paramref name="node"/> and the run that made it;
    /// <paramref name="run"/> is the run's cancellation, past which the run no longer waits for the call.
    /// </summary>
    public void Add(Task call, string node, FunctionCallOrigin? origin, CancellationToken run)
    {
        if (call.IsCompleted) return;
        calls[call] = (origin is { ExecutionId.Length: > 0 } made
            ? $"node '{node}' of graph {made.GraphId} (execution {made.ExecutionId}, started by {made.Caller})"
            : $"node '{node}'", run);
        // Registered after the entry is added, so a call that ends meanwhile still removes it.
        call.ContinueWith(static (ended, state) => ((ConcurrentDictionary<Task, (string, CancellationToken)>)state!).TryRemove(ended, out _), calls,
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>How many node calls are under way.</summary>
    public int Count => calls.Count;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Waits for the node calls of cancelled runs (the stop cancels every async run; a synchronous one is cancelled with its
    /// request, before this) until none is left or <paramref name="cancellationToken"/> (the end of the host's shutdown
    /// timeout) fires; logs each one left. A call whose run still waits for it is that run's to end (its request's).
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested && Abandoned().Select(c => c.Key).ToArray() is { Length: > 0 } abandoned)
            await Task.WhenAll(abandoned).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        foreach (var (_, (name, _)) in Abandoned())
            logger.LogError("the server is stopping while the function call of {Call} still runs (its run stopped waiting for it, and the shutdown timeout, "
                + "--shutdownTimeoutSeconds, ran out before it ended): its decision is lost unless it ends before the decision log closes", name);
    }

    private IEnumerable<KeyValuePair<Task, (string Name, CancellationToken Run)>> Abandoned() =>
        calls.Where(c => c.Value.Run.IsCancellationRequested && !c.Key.IsCompleted);
}
