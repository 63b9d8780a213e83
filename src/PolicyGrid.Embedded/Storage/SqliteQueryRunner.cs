using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// Runs a <see cref="DocumentQuery"/> against one collection table. The filter is translated into SQL
/// (<see cref="SqlFilterTranslator"/>); rows SQL cannot decide are checked with Core's Matches as they
/// stream by. Sorting happens in SQL when every key is a top-level field (compared with Core's order through
/// a collation), and skip/limit go into SQL when the whole filter was exact.
/// </summary>
internal sealed class SqliteQueryRunner
{
    public IReadOnlyList<StoredDocument> Run(SqliteConnection connection, string table, DocumentQuery query, CancellationToken ct)
    {
        // One budget for the filter's regexes inside SQL and for the rows Core decides.
        var budget = query.BudgetFor(ct);
        Exception? failure = null;
        // Only queries need Core's orderings and tests inside SQL; reads and writes skip registering them.
        SqliteCollations.Register(connection, budget, e => failure = e);
        var translator = new SqlFilterTranslator();
        var condition = translator.Node(query.Filter, "body");
        if (translator.Parameters.Count > SqlFilterTranslator.MaxParameters)
        {
            translator = new SqlFilterTranslator();
            condition = SqlCondition.Unknown;
        }
        var orderBy = SqlOrderBy(query.Sort, translator);
        var exact = condition.IsExact;

        using var command = connection.CreateCommand();
        var sql = $"SELECT id, body, revision, {(exact ? "1" : $"coalesce(({condition.Certain}), 0)")} FROM \"{table}\" WHERE {condition.Possible}";
        if (orderBy is not null)
        {
            sql += $" ORDER BY {orderBy}";
            if (exact) sql += " LIMIT $limit OFFSET $skip";
        }
        command.CommandText = sql;
        foreach (var (name, value) in translator.Parameters) command.Parameters.AddWithValue(name, value);
        if (orderBy is not null && exact)
        {
            command.Parameters.AddWithValue("$limit", query.Limit);
            command.Parameters.AddWithValue("$skip", query.Skip);
        }

        try
        {
            using var reader = command.ExecuteReader();
            if (orderBy is not null)
                return exact ? ReadAll(reader, ct) : ReadPage(reader, query, budget, ct);
            // Sort keys SQL cannot order exactly: collect every match and order with Core's comparison.
            var all = ReadMatching(reader, query.Filter, budget, ct);
            all.Sort(new DocumentOrder(query.Sort).Compare);
            return all.Skip(query.Skip).Take(query.Limit).ToList();
        }
        catch (SqliteException) when (failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            throw;
        }
    }

    private static List<StoredDocument> ReadAll(SqliteDataReader reader, CancellationToken ct)
    {
        var result = new List<StoredDocument>();
        while (reader.Read())
        {
            ct.ThrowIfCancellationRequested();
            result.Add(Document(reader, JsonNode.Parse(reader.GetString(1))!.AsObject()));
        }
        return result;
    }

    /// <summary>Streams ordered rows, deciding the uncertain ones with Core, until the page is full.</summary>
    private static List<StoredDocument> ReadPage(SqliteDataReader reader, DocumentQuery query, FilterBudget budget, CancellationToken ct)
    {
        var result = new List<StoredDocument>();
        var toSkip = query.Skip;
        while (result.Count < query.Limit && reader.Read())
        {
            ct.ThrowIfCancellationRequested();
            var sure = reader.GetInt64(3) != 0;
            JsonObject? body = null;
            if (!sure)
            {
                body = JsonNode.Parse(reader.GetString(1))!.AsObject();
                if (!budget.Matches(query.Filter, body)) continue;
            }
            if (toSkip > 0) { toSkip--; continue; }
            result.Add(Document(reader, body ?? JsonNode.Parse(reader.GetString(1))!.AsObject()));
        }
        return result;
    }

    private static List<StoredDocument> ReadMatching(SqliteDataReader reader, FilterNode filter, FilterBudget budget, CancellationToken ct)
    {
        var result = new List<StoredDocument>();
        while (reader.Read())
        {
            ct.ThrowIfCancellationRequested();
            var body = JsonNode.Parse(reader.GetString(1))!.AsObject();
            if (reader.GetInt64(3) != 0 || budget.Matches(filter, body)) result.Add(Document(reader, body));
        }
        return result;
    }

    private static StoredDocument Document(SqliteDataReader reader, JsonObject body) =>
        new(reader.GetString(0), body, SqliteDocumentStore.Etag(reader.GetInt64(2)));

    /// <summary>
    /// ORDER BY for keys on top-level fields: the field's JSON text under a collation that applies Core's
    /// SortCompare (a missing field counts as JSON null, as in Core), then
    /// the id. Null when some key is a nested path, whose "first value" walks arrays.
    /// </summary>
    private static string? SqlOrderBy(IReadOnlyList<SortKey> keys, SqlFilterTranslator translator)
    {
        var parts = new List<string>();
        foreach (var key in keys)
        {
            if (key.IsDocumentId)
            {
                parts.Add($"id {(key.Direction == SortDirection.Desc ? "DESC" : "ASC")}");
                continue;
            }
            if (key.Path.Length == 0 || key.Path.Contains('.', StringComparison.Ordinal) || !SqlFilterTranslator.IsPlainSegment(key.Path)) return null;
            var collation = VersionComparer.IsVersionField(key.Path) ? SqliteCollations.JsonVersionOrder : SqliteCollations.JsonOrder;
            parts.Add($"coalesce(body -> {translator.AddParameter($"$.\"{key.Path}\"")}, 'null') COLLATE {collation} {(key.Direction == SortDirection.Desc ? "DESC" : "ASC")}");
        }
        // Ids in SQLite's own (UTF-8 byte) order, so that with no sort keys the primary key index gives the
        // order and a LIMIT stops the scan early; DocumentOrder breaks ties the same way.
        if (!keys.Any(k => k.IsDocumentId)) parts.Add("id ASC");
        return string.Join(", ", parts);
    }
}
