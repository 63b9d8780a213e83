using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Embedded.Graphs;

/// <summary>
/// The in-process graph runner of <c>serve</c>. Every node becomes a task that waits for its parents' tasks
/// (the plan's edges), so independent nodes run at the same time without waiting for a whole level, bounded
/// by <see cref="GraphRunOptions.MaxParallelism"/>. The first failing node cancels the rest.
/// </summary>
public sealed class LocalGraphRunner(IFunctionInvoker functions, TimeProvider clock, RunningNodeCalls? running = null) : IGraphRunner
{
    private static readonly HashSet<int> RetriedStatuses = [422, 429, 502, 503, 504];
    private readonly RunningNodeCalls running = running ?? new RunningNodeCalls(Microsoft.Extensions.Logging.Abstractions.NullLogger<RunningNodeCalls>.Instance);

    public async Task<GraphRunResult> RunAsync(GraphPlan plan, JsonNode? input, GraphRunOptions options, CancellationToken ct = default)
    {
        using var run = new GraphRun(input, options, ct);
        var nodes = new Dictionary<string, Task<JsonNode?>>();
        foreach (var level in plan.Levels)
        {
            foreach (var node in level)
            {
                var parents = plan.Parents(node).Select(p => nodes[p]).ToArray();
                nodes[node] = RunNodeAsync(run, node, parents);
            }
        }

        try
        {
            await Task.WhenAll(nodes.Values);
        }
        catch when (run.Failure is not null)
        {
            throw run.Failure;
        }
        catch (OperationCanceledException) when (run.DeadlinePassed)
        {
            throw GraphFailures.DeadlineExceeded(options.Deadline, nodes.Where(n => !n.Value.IsCompletedSuccessfully).Select(n => n.Key));
        }

        return new GraphRunResult(nodes[plan.Sink].Result, [.. run.Trace]);
    }

    private async Task<JsonNode?> RunNodeAsync(GraphRun run, string node, Task<JsonNode?>[] parents)
    {
        // Parents first: a failed or cancelled parent ends this node too.
        var outputs = await Task.WhenAll(parents);
        var input = parents.Length switch
        {
            0 => run.Input?.DeepClone(),
            1 => outputs[0]?.DeepClone(),
            _ => new JsonArray([.. outputs.Select(o => o?.DeepClone())]),
        };

        await run.Slots.WaitAsync(run.Token);
        try
        {
            var retry = run.Options.NodeRetry;
            for (var attempt = 1; ; attempt++)
            {
                var started = clock.GetUtcNow();
                var watch = Stopwatch.StartNew();
                try
                {
                    var call = run.Options.Origin is { } origin
                        ? functions.CallAsync(node, input?.DeepClone(), origin, run.Token)
                        : functions.CallAsync(node, input?.DeepClone(), run.Token);
                    // WaitAsync: the graph answers at its deadline even if a policy ignores cancellation. The call then runs
                    // on until it has recorded its decision, and the server's stop waits for it (RunningNodeCalls).
                    running.Add(call, node, run.Options.Origin, run.Token);
                    JsonNode output = await call.WaitAsync(run.Token);
                    if (run.Options.Trace)
                        run.Trace.Enqueue(new GraphNodeTrace(node, input?.DeepClone(), output.DeepClone(), started, watch.Elapsed.TotalMilliseconds));
                    return output;
                }
                catch (PolicyGridException e) when (attempt < retry.MaxAttempts && RetriedStatuses.Contains(e.Status) && !run.Token.IsCancellationRequested)
                {
                    await Task.Delay(retry.Backoff, clock, run.Token);
                }
                catch (PolicyGridException e)
                {
                    run.Fail(GraphFailures.NodeFailed(node, e.Status, e.Code, e.Message, e));
                    throw;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    run.Fail(GraphFailures.NodeFailed(node, 502, ErrorCodes.BackendError, e.Message));
                    throw;
                }
            }
        }
        finally
        {
            run.Slots.Release();
        }
    }

    /// <summary>The shared state of one run: its cancellation (caller, deadline or first failure), slots and trace.</summary>
    private sealed class GraphRun : IDisposable
    {
        private readonly CancellationTokenSource _cancel;
        private readonly CancellationToken _caller;
        private PolicyGridException? _failure;

        public GraphRun(JsonNode? input, GraphRunOptions options, CancellationToken caller)
        {
            Input = input;
            Options = options;
            _caller = caller;
            _cancel = CancellationTokenSource.CreateLinkedTokenSource(caller);
            _cancel.CancelAfter(options.Deadline);
            Slots = new SemaphoreSlim(Math.Max(1, options.MaxParallelism));
        }

        public JsonNode? Input { get; }
        public GraphRunOptions Options { get; }
        public SemaphoreSlim Slots { get; }
        public ConcurrentQueue<GraphNodeTrace> Trace { get; } = new();
        public CancellationToken Token => _cancel.Token;
        public PolicyGridException? Failure => Volatile.Read(ref _failure);
        public bool DeadlinePassed => _cancel.IsCancellationRequested && !_caller.IsCancellationRequested;

        /// <summary>Keeps the first failure (the one the caller hears about) and stops every other node.</summary>
        public void Fail(PolicyGridException failure)
        {
            if (Interlocked.CompareExchange(ref _failure, failure, null) is null)
                _cancel.Cancel();
        }

        public void Dispose()
        {
            _cancel.Dispose();
            Slots.Dispose();
        }
    }
}
