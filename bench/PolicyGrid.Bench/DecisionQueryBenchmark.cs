using System.Diagnostics;
using CultureInfo = System.Globalization.CultureInfo;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Bench;

/// <summary>
/// Selective audit queries (POST /decisions/query) on SQLite, in one run: the same decisions in the decision table
/// (id ranges for time windows, field indexes, sort on "at" in id order) and in a table of another name, which the
/// store reads as it read every collection before (every row's JSON tested, sorts through the collation). Also what
/// the indexes cost the decision log's writer per decision, and how long an existing table takes to get them.
/// Options: --decisions N (default 100000), spread over one day, 1,000 callers, 100 policies, 1% errors.
/// </summary>
public static class DecisionQueryBenchmark
{
    private const string Unindexed = "decisions_unindexed";

    public static async Task<int> RunAsync(string[] args)
    {
        var index = Array.IndexOf(args, "--decisions");
        var count = index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], CultureInfo.InvariantCulture) : 100_000;
        var dir = Directory.CreateTempSubdirectory("pg-bench-decisions-").FullName;
        try
        {
            var database = new SqliteDatabase(Path.Combine(dir, "policygrid.db"));
            var store = new SqliteDocumentStore(database, DecisionLogOptions.IndexableFields);
            var start = new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero);
            var decisions = Sample(count, start);
            Console.WriteLine($"decision queries on SQLite: {count:N0} decisions over one day, newest 100 per query");

            // The writer's cost: the same batches (the log's 500) into each table, alternating, so both see the same disk.
            var (withIndexes, without) = (TimeSpan.Zero, TimeSpan.Zero);
            foreach (var batch in decisions.Chunk(500))
            {
                without += await TimeAsync(() => store.CreateManyAsync(Unindexed, batch, static d => d.Id, static (w, d) => d.Decision.WriteTo(w, d.Id)));
                withIndexes += await TimeAsync(() => store.CreateManyAsync(Collections.Decisions, batch, static d => d.Id, static (w, d) => d.Decision.WriteTo(w, d.Id)));
            }
            double PerDecision(TimeSpan t) => t.TotalMicroseconds / count;
            Console.WriteLine($"  writing (500 a batch, full sync): {PerDecision(without):F1} µs per decision unindexed, {PerDecision(withIndexes):F1} µs with the indexes (+{PerDecision(withIndexes) - PerDecision(without):F1} µs)");

            var past = start.AddHours(3);
            string At(DateTimeOffset t) => DecisionLog.FormatTime(t);
            var queries = new (string Name, string Filter, SortKey Sort)[]
            {
                ("one caller of 1,000", """{"caller": "caller7"}""", SortKey.ById(SortDirection.Desc)),
                ("one policy of 100", """{"policy_rule_uri": "policy42:1.0-a"}""", SortKey.ById(SortDirection.Desc)),
                ("error outcomes (1%)", """{"outcome": "error"}""", SortKey.ById(SortDirection.Desc)),
                ("results (99%)", """{"outcome": "result"}""", SortKey.ById(SortDirection.Desc)),
                ("results or errors ($in, all of them)", """{"outcome": {"$in": ["result", "error"]}}""", SortKey.ById(SortDirection.Desc)),
                ("two callers ($in)", """{"caller": {"$in": ["caller7", "caller8"]}}""", SortKey.ById(SortDirection.Desc)),
                ("a minute 3 h into the day", $$$"""{"at": {"$gte": "{{{At(past)}}}", "$lt": "{{{At(past.AddMinutes(1))}}}"}}""", SortKey.ById(SortDirection.Desc)),
                ("an hour, one policy", $$$"""{"at": {"$gte": "{{{At(past)}}}", "$lt": "{{{At(past.AddHours(1))}}}"}, "policy_rule_uri": "policy42:1.0-a"}""", SortKey.ById(SortDirection.Desc)),
                ("everything, sorted by at", "{}", new SortKey("at", SortDirection.Desc)),
                ("one policy, sorted by at", """{"policy_rule_uri": "policy42:1.0-a"}""", new SortKey("at", SortDirection.Desc)),
                ("everything, newest first (as before)", "{}", SortKey.ById(SortDirection.Desc)),
            };
            Console.WriteLine($"  {"query",-38} {"read all (before)",18} {"now",10} {"ratio",8}");
            foreach (var (name, filterJson, sort) in queries)
            {
                var query = new DocumentQuery(FilterParser.Parse(JsonNode.Parse(filterJson)), [sort], 0, 100);
                var before = await QueryTimeAsync(store, Unindexed, query);
                var now = await QueryTimeAsync(store, Collections.Decisions, query);
                if (!before.Ids.SequenceEqual(now.Ids)) throw new InvalidOperationException($"{name}: the two tables answered differently");
                Console.WriteLine($"  {name,-38} {before.Ms,15:F2} ms {now.Ms,7:F2} ms {before.Ms / now.Ms,7:F0}x   ({now.Ids.Count} found)");
            }

            // An existing data directory: the same table, without indexes, gets them at the store's first use.
            await using var connection = await database.OpenAsync(CancellationToken.None);
            var clock = Stopwatch.StartNew();
            using (var command = connection.CreateCommand())
            {
                command.CommandText = DecisionTable.CreateIndexes(SqliteDatabase.TableFor(Unindexed), DecisionLogOptions.IndexableFields);
                command.ExecuteNonQuery();
            }
            Console.WriteLine($"  indexing an existing table of {count:N0} decisions (CREATE INDEX IF NOT EXISTS at start): {clock.Elapsed.TotalSeconds:F1} s");
            return 0;
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Decisions as the log makes them: ids from their time in DecisionLog.NewId's layout.</summary>
    private static List<(string Id, Decision Decision)> Sample(int count, DateTimeOffset start)
    {
        var random = new Random(42);
        var list = new List<(string, Decision)>(count);
        var step = TimeSpan.FromDays(1) / count;
        for (var i = 0; i < count; i++)
        {
            var at = start + step * i;
            var error = random.Next(100) == 0;
            var policy = $"policy{random.Next(100)}:1.0-a";
            var decision = new Decision("execute", policy, "sha", $"caller{random.Next(1000)}", policy, $"input-{i}",
                error ? Decision.OutcomeError : Decision.OutcomeResult, error ? "timeout" : "", error ? 504 : 200, 0.1, at);
            var id = at.ToUnixTimeMilliseconds().ToString("x12", CultureInfo.InvariantCulture) + "7" + (i % 0x1000).ToString("x3", CultureInfo.InvariantCulture)
                + (0x8000_0000_0000_0000UL | ((ulong)random.NextInt64() & 0x3FFF_FFFF_FFFF_FFFFUL)).ToString("x16", CultureInfo.InvariantCulture);
            list.Add((id, decision));
        }
        return list;
    }

    private static async Task<TimeSpan> TimeAsync(Func<Task> write)
    {
        var clock = Stopwatch.StartNew();
        await write();
        return clock.Elapsed;
    }

    private static async Task<(double Ms, List<string> Ids)> QueryTimeAsync(SqliteDocumentStore store, string collection, DocumentQuery query)
    {
        var first = await store.QueryAsync(collection, query);
        var rounds = 0;
        var clock = Stopwatch.StartNew();
        // At least three runs, and up to a second's worth: a full read takes seconds at a million.
        while (rounds < 3 || (clock.Elapsed < TimeSpan.FromSeconds(1) && rounds < 200))
        {
            await store.QueryAsync(collection, query);
            rounds++;
        }
        return (clock.Elapsed.TotalMilliseconds / rounds, first.Select(d => d.Id).ToList());
    }
}
