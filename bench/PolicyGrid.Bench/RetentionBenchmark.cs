using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Bench;

/// <summary>
/// Decision log retention on SQLite: the same log pruned from N entries down to its MaxCount by id
/// (<see cref="IDocumentTrimStore"/>) and by query and delete (the fallback for stores without it), in the same
/// run, next to how fast the log writes decisions. Retention has to delete at least as fast as a busy executor
/// writes, or the bound does not hold. Options: --decisions N (default 60000; a third is kept).
/// </summary>
public static class RetentionBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var index = Array.IndexOf(args, "--decisions");
        var count = index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], System.Globalization.CultureInfo.InvariantCulture) : 60_000;
        var keep = count / 3;
        var dir = Directory.CreateTempSubdirectory("pg-bench-retention-").FullName;
        try
        {
            Console.WriteLine($"decision log retention on SQLite: {count:N0} decisions pruned to the newest {keep:N0}");
            var rates = new List<double>();
            foreach (var (name, byId) in new[] { ("by id (IDocumentTrimStore)", true), ("by query and delete (fallback)", false) })
            {
                var sqlite = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, $"{byId}.db")));
                IDocumentStore store = byId ? sqlite : new QueryOnlyStore(sqlite);
                await using var log = new DecisionLog(store, new DecisionLogOptions { MaxCount = keep }, TimeProvider.System, NullLogger<DecisionLog>.Instance);
                var clock = Stopwatch.StartNew();
                for (var i = 0; i < count; i++)
                    await log.RecordAsync(new Decision("execute", "ip_allowlist:1.0-a", "sha", "anonymous", "ip_allowlist:1.0-a", $"input-{i}", Decision.OutcomeResult, "", 200, 0.1, DateTimeOffset.UtcNow));
                await log.FlushAsync();
                var writeRate = count / clock.Elapsed.TotalSeconds;
                clock.Restart();
                var removed = await log.PruneAsync(CancellationToken.None);
                var pruneRate = removed / clock.Elapsed.TotalSeconds;
                if (removed != count - keep) throw new InvalidOperationException($"{name} removed {removed}, expected {count - keep}");
                rates.Add(pruneRate);
                Console.WriteLine($"  {name,-32} {pruneRate,10:N0} deletions/s ({clock.Elapsed.TotalSeconds:F2} s); the log wrote {writeRate:N0} decisions/s");
            }
            Console.WriteLine($"  ratio by id / by query = {rates[0] / rates[1]:F0}x");
            await QueryNewestAsync(dir, count);
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// POST /decisions/query's default, newest first: the newest 100 decisions of one policy among <paramref name="count"/>
    /// of ten policies, sorted by "at" (every match sorted through the JSON collation) and in id order (the id index
    /// walked backwards until the page is full), in the same run.
    /// </summary>
    private static async Task QueryNewestAsync(string dir, int count)
    {
        var store = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "query.db")));
        await using (var log = new DecisionLog(store, new DecisionLogOptions { MaxCount = count }, TimeProvider.System, NullLogger<DecisionLog>.Instance))
        {
            for (var i = 0; i < count; i++)
            {
                var uri = $"policy{i % 10}:1.0-a";
                await log.RecordAsync(new Decision("execute", uri, "sha", "anonymous", uri, $"input-{i}", Decision.OutcomeResult, "", 200, 0.1, DateTimeOffset.UtcNow));
            }
            await log.FlushAsync();
        }
        var filter = PolicyGrid.Core.Querying.FilterParser.Parse(new JsonObject { ["policy_rule_uri"] = "policy3:1.0-a" });
        Console.WriteLine($"decision query, newest 100 of one policy among {count:N0} decisions of ten:");
        var times = new List<double>();
        foreach (var (name, sort) in new[] { ("sorted by \"at\"", new SortKey("at", SortDirection.Desc)), ("in id order", SortKey.ById(SortDirection.Desc)) })
        {
            var query = new DocumentQuery(filter, [sort], 0, 100);
            var first = await store.QueryAsync(Collections.Decisions, query);
            var clock = Stopwatch.StartNew();
            const int Rounds = 10;
            for (var i = 0; i < Rounds; i++) await store.QueryAsync(Collections.Decisions, query);
            var ms = clock.Elapsed.TotalMilliseconds / Rounds;
            times.Add(ms);
            Console.WriteLine($"  {name,-32} {ms,8:F2} ms per query ({first.Count} decisions, newest at {first[0].Body["at"]})");
        }
        Console.WriteLine($"  ratio sorted by at / id order = {times[0] / times[1]:F0}x");
    }

    /// <summary>The SQLite store seen only as an <see cref="IDocumentStore"/>, as retention sees a store without bulk trimming.</summary>
    private sealed class QueryOnlyStore(SqliteDocumentStore inner) : IDocumentStore
    {
        public Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) => inner.GetAsync(collection, id, ct);
        public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.CreateAsync(collection, id, body, ct);
        public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) => inner.ReplaceAsync(collection, id, body, expectedRevision, ct);
        public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.UpsertAsync(collection, id, body, ct);
        public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => inner.DeleteAsync(collection, id, expectedRevision, ct);
        public Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => inner.QueryAsync(collection, query, ct);
    }
}
