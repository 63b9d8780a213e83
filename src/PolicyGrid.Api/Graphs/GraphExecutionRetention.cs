using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Runtime;

namespace PolicyGrid.Api.Graphs;

/// <summary>
/// Keeps the records of asynchronous graph runs (<see cref="Collections.GraphExecutions"/>) bounded: at start and every
/// <see cref="GraphExecutionOptions.PruneInterval"/> it removes those that started more than
/// <see cref="GraphExecutionOptions.KeepExecutionsFor"/> ago (at least the longest deadline, past which no run is still
/// going), and the oldest finished ones beyond <see cref="GraphExecutionOptions.MaxFinishedExecutions"/>.
/// </summary>
public sealed class GraphExecutionRetention(IDocumentStore store, IOptions<GraphExecutionOptions> options, TimeProvider clock, ILogger<GraphExecutionRetention> logger)
    : PeriodicPruning(clock, logger)
{
    protected override TimeSpan Interval => options.Value.PruneInterval;

    protected override string What => "graph execution";

    /// <summary>Removes what is past the limits now; answers how many records went.</summary>
    public override async Task<int> PruneAsync(CancellationToken ct)
    {
        var o = options.Value;
        var longestRun = TimeSpan.FromSeconds(o.MaxDeadlineSeconds);
        var keepFor = o.KeepExecutionsFor > longestRun ? o.KeepExecutionsFor : longestRun;
        var removed = 0;
        if (Timestamps.Cutoff(Clock.GetUtcNow(), keepFor) is { } before)
            removed += await DocumentPruning.DeleteMatchingAsync(store, Collections.GraphExecutions, Filter("created_at", "$lt", Timestamps.Format(before)), ct);
        removed += await DocumentPruning.DeleteBeyondAsync(store, Collections.GraphExecutions, Filter("status", "$ne", ExecutionStatus.Running),
            new SortKey("created_at", SortDirection.Desc), o.MaxFinishedExecutions, ct);
        if (removed > 0) logger.LogInformation("graph execution retention removed {Count} records", removed);
        return removed;
    }

    private static FilterNode Filter(string field, string op, string operand) =>
        FilterParser.Parse(new JsonObject { [field] = new JsonObject { [op] = operand } });
}
