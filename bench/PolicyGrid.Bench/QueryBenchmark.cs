using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Embedded.Storage;

namespace PolicyGrid.Bench;

/// <summary>
/// SqliteDocumentStore.QueryAsync against a hand-written json_extract scan over the same 100,000 policy
/// rows, in the same process. Both sides return the same rows parsed into JsonObjects; the ratio is the
/// cost of translating Core's filter (Mongo semantics: arrays, null/missing, exact numbers) into SQL.
/// Options: --docs N (default 100000), --runs N (default 7).
/// </summary>
public static class QueryBenchmark
{
    private const string Collection = "policies";

    public static async Task<int> RunAsync(string[] args)
    {
        var docs = Option(args, "--docs", 100_000);
        var runs = Option(args, "--runs", 7);
        var dir = Path.Combine(Path.GetTempPath(), "pg-bench-query-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var db = new SqliteDatabase(Path.Combine(dir, EmbeddedStorage.DatabaseFile));
            var store = new SqliteDocumentStore(db);
            var load = Stopwatch.StartNew();
            await LoadAsync(db, store, docs);
            Console.WriteLine($"loaded {docs:N0} policy documents in {load.Elapsed.TotalSeconds:F1} s");

            var cases = new (string Name, string Filter, string RawSql, object[] RawParameters)[]
            {
                ("a) release_tag equality",
                    """{"release_tag": "hotfix7"}""",
                    "json_extract(body, '$.release_tag') = $a",
                    ["hotfix7"]),
                ("b) metadata.audience $in + $gte number",
                    """{"metadata.audience": {"$in": ["finance", "legal"]}, "resource_estimates.memory_mb": {"$gte": 8100}}""",
                    "EXISTS (SELECT 1 FROM json_each(body, '$.metadata.audience') WHERE value IN ($a, $b)) AND json_extract(body, '$.resource_estimates.memory_mb') >= $c",
                    ["finance", "legal", 8100]),
                ("c) $regex on comma-separated tags",
                    """{"tags": {"$regex": "(^|,)gdpr-art-17(,|$)"}}""",
                    "json_extract(body, '$.tags') REGEXP $a",
                    ["(^|,)gdpr-art-17(,|$)"]),
            };

            Console.WriteLine($"{"query",-42} {"matches",8} {"store ms",9} {"raw ms",9} {"ratio",6}");
            var worst = 0.0;
            foreach (var (name, filterJson, rawSql, rawParameters) in cases)
            {
                var query = new DocumentQuery(FilterParser.Parse(JsonNode.Parse(filterJson)), [], 0, DocumentQuery.MaxLimit);
                var storeIds = (await store.QueryAsync(Collection, query)).Select(d => d.Id).ToList();
                var rawIds = await RawAsync(db, rawSql, rawParameters);
                if (!storeIds.SequenceEqual(rawIds))
                {
                    Console.Error.WriteLine($"{name}: store returned {storeIds.Count} rows, raw SQL {rawIds.Count}; the two must agree");
                    return 1;
                }
                var storeMs = new List<double>();
                var rawMs = new List<double>();
                for (var i = 0; i < runs; i++)
                {
                    // Alternate the two so drift (caches, CPU frequency) hits both alike.
                    var sw = Stopwatch.StartNew();
                    await store.QueryAsync(Collection, query);
                    storeMs.Add(sw.Elapsed.TotalMilliseconds);
                    sw.Restart();
                    await RawAsync(db, rawSql, rawParameters);
                    rawMs.Add(sw.Elapsed.TotalMilliseconds);
                }
                var s = Median(storeMs);
                var r = Median(rawMs);
                worst = Math.Max(worst, s / r);
                Console.WriteLine($"{name,-42} {storeIds.Count,8} {s,9:F1} {r,9:F1} {s / r,5:F2}x");
            }
            Console.WriteLine($"worst ratio {worst:F2}x (target <= 1.50x)");
            return 0;
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The baseline: the obvious hand-written SQL over the same table, rows parsed the same way.</summary>
    private static async Task<List<string>> RawAsync(SqliteDatabase db, string where, object[] parameters)
    {
        await using var connection = await db.OpenAsync(CancellationToken.None);
        connection.CreateFunction<string, string?, bool>("regexp", (pattern, value) =>
            value is not null && Regex.IsMatch(value, pattern, RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(250)), isDeterministic: true);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT id, body, revision FROM \"{SqliteDatabase.TableFor(Collection)}\" WHERE {where} ORDER BY id LIMIT {DocumentQuery.MaxLimit}";
        var names = new[] { "$a", "$b", "$c" };
        for (var i = 0; i < parameters.Length; i++) command.Parameters.AddWithValue(names[i], parameters[i]);
        var ids = new List<string>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            var body = JsonNode.Parse(reader.GetString(1))!.AsObject();
            GC.KeepAlive(body);
            ids.Add(reader.GetString(0));
        }
        return ids;
    }

    /// <summary>
    /// Realistic policy documents (every contract field present). The first goes through the store so the
    /// table is the store's own; the rest are bulk-inserted in one transaction, since 100,000 individually
    /// fsynced writes would take minutes and are not what is measured.
    /// </summary>
    private static async Task LoadAsync(SqliteDatabase db, SqliteDocumentStore store, int count)
    {
        var random = new Random(42);
        await store.CreateAsync(Collection, "seed", Policy(random, -1));
        await using var connection = await db.OpenAsync(CancellationToken.None);
        using var tx = connection.BeginTransaction();
        using var insert = connection.CreateCommand();
        insert.Transaction = tx;
        insert.CommandText = $"INSERT INTO \"{SqliteDatabase.TableFor(Collection)}\"(id, body, revision) VALUES ($id, $body, $rev)";
        var id = insert.Parameters.Add("$id", SqliteType.Text);
        var body = insert.Parameters.Add("$body", SqliteType.Text);
        var rev = insert.Parameters.Add("$rev", SqliteType.Integer);
        for (var i = 0; i < count - 1; i++)
        {
            var doc = Policy(random, i);
            id.Value = doc["policy_rule_uri"]!.GetValue<string>();
            body.Value = doc.ToJsonString();
            rev.Value = i + 2;
            insert.ExecuteNonQuery();
        }
        tx.Commit();
    }

    private static readonly string[] Audiences = ["ops", "security", "finance", "legal", "support", "sales", "engineering", "hr"];
    private static readonly string[] Tags = ["network", "ip", "allowlist", "pci-dss", "sox", "hipaa", "rate-limit", "geo", "fraud", "kyc", "aml", "billing", "auth", "mfa", "session", "audit", "retention", "pii", "export", "beta-feature"];
    private static readonly string[] Regions = ["eu-west", "eu-central", "us-east", "us-west", "ap-south"];

    private static JsonObject Policy(Random r, int i)
    {
        var name = $"policy_{i + 1:D6}";
        var version = $"{r.Next(1, 4)}.{r.Next(0, 12)}";
        var tagRoll = r.NextDouble();
        var releaseTag = tagRoll < 0.4 ? "stable" : tagRoll < 0.7 ? "beta" : tagRoll < 0.9 ? "canary" : $"hotfix{r.Next(100)}";
        var tags = Enumerable.Range(0, r.Next(1, 5)).Select(_ => Tags[r.Next(Tags.Length)]).Distinct().ToList();
        if (r.NextDouble() < 0.005) tags.Insert(r.Next(tags.Count + 1), "gdpr-art-17");
        var audience = new JsonArray(Enumerable.Range(0, r.Next(1, 4)).Select(_ => (JsonNode?)Audiences[r.Next(Audiences.Length)]).Distinct().ToArray());
        var now = DateTimeOffset.Parse("2026-01-01T00:00:00Z", CultureInfo.InvariantCulture).AddMinutes(i).ToString("O", CultureInfo.InvariantCulture);
        return new JsonObject
        {
            ["policy_rule_uri"] = $"{name}:{version}-{releaseTag}",
            ["name"] = name,
            ["version"] = version,
            ["release_tag"] = releaseTag,
            ["metadata"] = new JsonObject
            {
                ["audience"] = audience,
                ["owner"] = $"team-{r.Next(40)}",
                ["region"] = Regions[r.Next(Regions.Length)],
                ["risk_score"] = r.Next(0, 100),
            },
            ["tags"] = string.Join(",", tags),
            ["code"] = $"bundle://sha256/{Convert.ToHexStringLower(BitConverter.GetBytes(r.NextInt64()))}{new string('0', 48)}",
            ["code_type"] = "bundle",
            ["type"] = "python_class_v1",
            ["policy_input_schema"] = new JsonObject { ["ip"] = new JsonObject { ["type"] = "string", ["required"] = true } },
            ["policy_output_schema"] = new JsonObject { ["allowed"] = new JsonObject { ["type"] = "boolean" } },
            ["policy_settings_schema"] = new JsonObject(),
            ["policy_parameters_schema"] = new JsonObject { ["allowlist"] = new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["type"] = "string" } } },
            ["policy_settings"] = new JsonObject(),
            ["policy_parameters"] = new JsonObject { ["allowlist"] = new JsonArray("10.0.0.0/8", $"192.168.{r.Next(256)}.0/24") },
            ["management_commands_schema"] = new JsonArray(),
            ["description"] = $"Allows requests from approved networks for {audience[0]} workloads.",
            ["functionality_data"] = new JsonObject(),
            ["resource_estimates"] = new JsonObject { ["memory_mb"] = r.Next(128, 8192), ["cpu_millis"] = r.Next(10, 2000) },
            ["status"] = r.NextDouble() < 0.9 ? "active" : "deprecated",
            ["created_at"] = now,
            ["updated_at"] = now,
        };
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }

    private static int Option(string[] args, string name, int fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }
}
