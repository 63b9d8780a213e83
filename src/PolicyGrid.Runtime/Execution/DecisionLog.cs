using CultureInfo = System.Globalization.CultureInfo;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Runtime.Execution;

/// <summary>One execution as the audit trail keeps it.</summary>
public sealed record Decision(
    string Kind,
    string PolicyRuleUri,
    string BundleSha256,
    string Caller,
    string ContextKey,
    string InputSha256,
    string Outcome,
    string ErrorCode,
    int Status,
    double DurationMs,
    DateTimeOffset At)
{
    public const string OutcomeResult = "result";
    public const string OutcomeError = "error";

    public JsonObject ToJson(string id) => new()
    {
        ["decision_id"] = id,
        ["kind"] = Kind,
        ["policy_rule_uri"] = PolicyRuleUri,
        ["bundle_sha256"] = BundleSha256,
        ["caller"] = Caller,
        ["context_key"] = ContextKey,
        ["input_sha256"] = InputSha256,
        ["outcome"] = Outcome,
        ["error_code"] = ErrorCode,
        ["status"] = Status,
        ["duration_ms"] = Math.Round(DurationMs, 3),
        ["at"] = DecisionLog.FormatTime(At),
    };
}

/// <summary>
/// The decision log: every execution's policy, bundle, caller, input hash, outcome and duration
/// in <see cref="Collections.Decisions"/>, queryable like any collection, with bounded retention.
/// A failure to write the log is logged loudly but does not turn a policy's answer into an error.
/// </summary>
public sealed class DecisionLog(IDocumentStore store, DecisionLogOptions options, TimeProvider time, ILogger<DecisionLog> logger)
{
    public static string FormatTime(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    public async Task RecordAsync(Decision decision)
    {
        // Time-ordered ids keep the log's natural order readable.
        var id = Guid.CreateVersion7(decision.At).ToString("N");
        try
        {
            await store.CreateAsync(Collections.Decisions, id, decision.ToJson(id), CancellationToken.None);
        }
        catch (Exception e) when (e is PolicyGridException or IOException or InvalidOperationException)
        {
            logger.LogError(e, "could not record the decision for {Policy} by {Caller} ({Outcome})", decision.PolicyRuleUri, decision.Caller, decision.Outcome);
        }
    }

    /// <summary>Deletes decisions older than MaxAge and beyond the newest MaxCount; answers how many went.</summary>
    public async Task<int> PruneAsync(CancellationToken ct)
    {
        var removed = 0;
        var cutoff = FormatTime(time.GetUtcNow() - options.MaxAge);
        var tooOld = FilterParser.Parse(new JsonObject { ["at"] = new JsonObject { ["$lt"] = cutoff } });
        removed += await DeleteAllAsync(new DocumentQuery(tooOld, [new SortKey("at", SortDirection.Asc)], 0, DocumentQuery.MaxLimit), ct);
        while (true)
        {
            // Everything past the newest MaxCount, a page at a time.
            var beyond = await store.QueryAsync(Collections.Decisions,
                new DocumentQuery(new AndFilter([]), [new SortKey("at", SortDirection.Desc)], options.MaxCount, DocumentQuery.MaxLimit), ct);
            if (beyond.Count == 0) break;
            foreach (var doc in beyond) await store.DeleteAsync(Collections.Decisions, doc.Id, null, ct);
            removed += beyond.Count;
        }
        if (removed > 0) logger.LogInformation("decision log retention removed {Count} entries", removed);
        return removed;
    }

    private async Task<int> DeleteAllAsync(DocumentQuery query, CancellationToken ct)
    {
        var removed = 0;
        while (true)
        {
            var page = await store.QueryAsync(Collections.Decisions, query, ct);
            if (page.Count == 0) return removed;
            foreach (var doc in page) await store.DeleteAsync(Collections.Decisions, doc.Id, null, ct);
            removed += page.Count;
        }
    }
}
