using Microsoft.Extensions.Options;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Graphs;

/// <summary>
/// The asynchronous graph runs this server has under way, in all and per caller, held to
/// <see cref="GraphExecutionOptions.MaxAsyncRuns"/> and <see cref="GraphExecutionOptions.MaxAsyncRunsPerCaller"/>. An
/// asynchronous run is answered at once, so nothing else stopped one caller from starting runs without end, each holding a
/// task and up to <see cref="GraphExecutionOptions.MaxParallelism"/> function calls until its deadline.
/// </summary>
internal sealed class AsyncRunQuota(IOptions<GraphExecutionOptions> options)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, int> _byCaller = new(StringComparer.Ordinal);
    private int _total;

    /// <summary>
    /// A slot for one run of <paramref name="caller"/>, given back when it is disposed (once the run has ended); or 429
    /// overloaded with Retry-After, naming the limit reached and the setting, when either is reached.
    /// </summary>
    public IDisposable Admit(string caller)
    {
        var limits = options.Value;
        lock (_gate)
        {
            var mine = _byCaller.GetValueOrDefault(caller);
            if (mine >= limits.MaxAsyncRunsPerCaller)
                throw Problems.Overloaded($"'{caller}' has {mine} asynchronous graph runs under way, the most one caller may have at once " +
                    $"({GraphExecutionOptions.Section}:MaxAsyncRunsPerCaller); retry once one has ended, or cancel one (DELETE /graph/executions/{{id}})",
                    limits.RetryAfterSeconds);
            if (_total >= limits.MaxAsyncRuns)
                throw Problems.Overloaded($"this server has {_total} asynchronous graph runs under way, the most it runs at once " +
                    $"({GraphExecutionOptions.Section}:MaxAsyncRuns); retry later", limits.RetryAfterSeconds);
            _byCaller[caller] = mine + 1;
            _total++;
        }
        return new Slot(this, caller);
    }

    private void Release(string caller)
    {
        lock (_gate)
        {
            _total--;
            if (--_byCaller[caller] == 0) _byCaller.Remove(caller);
        }
    }

    private sealed class Slot(AsyncRunQuota quota, string caller) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) quota.Release(caller);
        }
    }
}
