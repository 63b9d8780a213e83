using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// Runs a <see cref="DocumentQuery"/> against one collection table. The filter is translated into SQL
/// (<see cref="SqlFilterTranslator"/>); rows SQL cannot decide are checked with Core's Matches as they
/// stream by. Sorting happens in SQL when every key is a top-level field (compared with Core's order through
/// a collation), and skip/limit go into SQL when the whole filter was exact.
/// </summary>
internal sealed class SqliteQueryRunner(IReadOnlyList<string> decisionIndexes)
{
    public IReadOnlyList<StoredDocument> Run(SqliteConnection connection, string table, DocumentQuery query, CancellationToken ct)
    {
        // One budget for the filter's regexes inside SQL and for the rows Core decides.
        var budget = query.BudgetFor(ct);
        Exception? failure = null;
        // Only queries need Core's orderings and tests inside SQL; reads and writes skip registering them.
        SqliteCollations.Register(connection, budget, e => failure = e);
        // The decision table is looked at before it is read; one read transaction makes both see the same rows.
        using var snapshot = table == DecisionTable.Name ? connection.BeginTransaction(deferred: true) : null;
        var statement = Prepare(connection, snapshot, table, query);
        using var command = statement.Command;
        try
        {
            using var reader = command.ExecuteReader();
            if (statement.AtDescending) return ReadNewestByAt(reader, query, budget, ct);
            if (statement.Ordered)
                return statement.Exact ? ReadAll(reader, ct) : ReadPage(reader, query, budget, ct);
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

    /// <summary>SQLite's plan for the statement <see cref="Run"/> would run (EXPLAIN QUERY PLAN's details, one a line): which indexes a query uses.</summary>
    public string Explain(SqliteConnection connection, string table, DocumentQuery query)
    {
        SqliteCollations.Register(connection, query.BudgetFor(CancellationToken.None), _ => { });
        using var snapshot = table == DecisionTable.Name ? connection.BeginTransaction(deferred: true) : null;
        using var command = Prepare(connection, snapshot, table, query).Command;
        command.CommandText = "EXPLAIN QUERY PLAN " + command.CommandText;
        using var reader = command.ExecuteReader();
        var lines = new List<string>();
        while (reader.Read()) lines.Add(reader.GetString(3));
        return string.Join("\n", lines);
    }

    private sealed record Statement(SqliteCommand Command, bool Exact, bool Ordered, bool AtDescending);

    private Statement Prepare(SqliteConnection connection, SqliteTransaction? snapshot, string table, DocumentQuery query)
    {
        var decisions = snapshot is null ? null : DecisionTable.Plan(connection, snapshot, query, decisionIndexes);
        var translator = new SqlFilterTranslator { IndexedFields = decisions?.IndexedFields ?? [] };
        var condition = translator.Node(query.Filter, "body");
        if (translator.Parameters.Count > SqlFilterTranslator.MaxParameters)
        {
            translator = new SqlFilterTranslator();
            condition = SqlCondition.Unknown;
        }
        if (decisions is { Ids: var ids } && !ids.IsEverything)
            condition = SqlCondition.And(condition, IdRange(ids, translator));
        // A sort on "at" alone over decisions: read in id order (DecisionTable.Plan), descending a millisecond at a time.
        var sort = decisions?.ByAt is { } byAt ? [SortKey.ById(byAt)] : query.Sort;
        var atDescending = decisions?.ByAt == SortDirection.Desc;
        var orderBy = SqlOrderBy(sort, translator);
        var exact = condition.IsExact;

        var command = connection.CreateCommand();
        command.Transaction = snapshot;
        var sql = $"SELECT id, body, revision, {(exact ? "1" : $"coalesce(({condition.Certain}), 0)")} FROM \"{table}\" WHERE {condition.Possible}";
        var paged = orderBy is not null && exact && !atDescending;
        if (orderBy is not null)
        {
            sql += $" ORDER BY {orderBy}";
            if (paged) sql += " LIMIT $limit OFFSET $skip";
        }
        command.CommandText = sql;
        foreach (var (name, value) in translator.Parameters) command.Parameters.AddWithValue(name, value);
        if (paged)
        {
            command.Parameters.AddWithValue("$limit", query.Limit);
            command.Parameters.AddWithValue("$skip", query.Skip);
        }
        return new Statement(command, exact, orderBy is not null, atDescending);
    }

    private static SqlCondition IdRange(DecisionIdRange ids, SqlFilterTranslator translator)
    {
        if (ids.IsEmpty) return SqlCondition.False;
        var parts = new List<SqlCondition>();
        if (ids.From is { } from) parts.Add(SqlCondition.Exact($"id >= {translator.AddParameter(from)}"));
        if (ids.Below is { } below) parts.Add(SqlCondition.Exact($"id < {translator.AddParameter(below)}"));
        return SqlCondition.And(parts);
    }

    /// <summary>
    /// Decisions newest first by "at" from rows in descending id order: Core breaks ties of "at" by ascending id, so
    /// each millisecond's rows (one id prefix) are turned round. Reads until the page is full and its last
    /// millisecond complete.
    /// </summary>
    private static List<StoredDocument> ReadNewestByAt(SqliteDataReader reader, DocumentQuery query, FilterBudget budget, CancellationToken ct)
    {
        var wanted = (long)query.Skip + query.Limit;
        var rows = new List<StoredDocument>();
        while (wanted > 0 && reader.Read())
        {
            ct.ThrowIfCancellationRequested();
            var id = reader.GetString(0);
            if (rows.Count >= wanted && !SameMillisecond(id, rows[^1].Id)) break;
            var body = JsonNode.Parse(reader.GetString(1))!.AsObject();
            if (reader.GetInt64(3) == 0 && !budget.Matches(query.Filter, body)) continue;
            rows.Add(Document(reader, body));
        }
        for (var start = 0; start < rows.Count;)
        {
            var end = start + 1;
            while (end < rows.Count && SameMillisecond(rows[end].Id, rows[start].Id)) end++;
            rows.Reverse(start, end - start);
            start = end;
        }
        return rows.Skip(query.Skip).Take(query.Limit).ToList();

        static bool SameMillisecond(string a, string b) =>
            a.Length >= DecisionIdRange.TimePrefixLength && b.Length >= DecisionIdRange.TimePrefixLength
            && a.AsSpan(0, DecisionIdRange.TimePrefixLength).SequenceEqual(b.AsSpan(0, DecisionIdRange.TimePrefixLength));
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
