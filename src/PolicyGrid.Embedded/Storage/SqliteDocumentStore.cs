using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// <see cref="IDocumentStore"/> on SQLite: one table per collection (id, JSON body, revision).
/// Revisions come from one database-wide sequence, so a document deleted and created again never
/// reuses an ETag a client may still hold.
/// Every committed write is counted per collection (<see cref="IDocumentChangeCounter"/>) for all stores
/// on the same file in this process. Other processes on the same file (local job runners) write only
/// jobs, decisions and their own context, never policies, so the count of policies is complete.
/// </summary>
public sealed class SqliteDocumentStore : IDocumentStore, IDocumentBatchStore, IDocumentTrimStore, IDocumentRevisions, IDocumentChangeCounter
{
    private const string SequenceTable = "pg_revision_sequence";
    private readonly SqliteDatabase _db;
    private readonly SqliteQueryRunner _queries;
    private readonly SqliteBulkInserter _bulk;

    private readonly IReadOnlyList<string> _decisionIndexes;

    /// <param name="db">The database file.</param>
    /// <param name="decisionIndexes">The decision fields to keep an index on (<see cref="PolicyGrid.Runtime.DecisionLogOptions.IndexedFields"/>); none when null.</param>
    public SqliteDocumentStore(SqliteDatabase db, IReadOnlyList<string>? decisionIndexes = null)
    {
        _db = db;
        _decisionIndexes = decisionIndexes ?? [];
        _queries = new SqliteQueryRunner(_decisionIndexes);
        _bulk = new SqliteBulkInserter(db.OpenAsync, EnsureTable, SequenceTable);
    }

    // Read on hot paths (every Type 2 call, and again by each call that waited for a policy worker): the table name of a
    // collection is worked out once, not checked and built anew on every read.
    public long ChangesTo(string collection) => _db.ChangesTo(CountedTables.GetOrAdd(collection, static c => SqliteDatabase.TableFor(c)));

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> CountedTables = new(StringComparer.Ordinal);

    public async Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default)
    {
        var table = SqliteDatabase.TableFor(collection);
        await using var connection = await OpenAsync(table, ct);
        return Read(connection, null, table, id);
    }

    public async Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default)
    {
        var table = SqliteDatabase.TableFor(collection);
        var json = Serialize(body);
        await using var connection = await OpenAsync(table, ct);
        using var tx = connection.BeginTransaction();
        if (Exists(connection, tx, table, id))
            throw DocumentStoreProblems.Duplicate(collection, id);
        var revision = NextRevision(connection, tx);
        Write(connection, tx, $"INSERT INTO \"{table}\"(id, body, revision) VALUES ($id, $body, $rev)", id, json, revision);
        tx.Commit();
        _db.Changed(table);
        return new StoredDocument(id, JsonNode.Parse(json)!.AsObject(), Etag(revision));
    }

    public async Task<string?> GetRevisionAsync(string collection, string id, CancellationToken ct = default)
    {
        var table = SqliteDatabase.TableFor(collection);
        await using var connection = await OpenAsync(table, ct);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT revision FROM \"{table}\" WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        return command.ExecuteScalar() is long revision ? Etag(revision) : null;
    }

    public async Task CreateManyAsync<T>(string collection, IReadOnlyList<T> items, Func<T, string> id, Action<Utf8JsonWriter, T> write, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(items);
        var table = SqliteDatabase.TableFor(collection);
        if (items.Count == 0) return;
        await _bulk.InsertAsync(collection, table, items, id, write, ct);
        _db.Changed(table);
    }

    public async Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default)
    {
        var table = SqliteDatabase.TableFor(collection);
        var json = Serialize(body);
        await using var connection = await OpenAsync(table, ct);
        using var tx = connection.BeginTransaction();
        var current = Read(connection, tx, table, id) ?? throw DocumentStoreProblems.Missing(collection, id);
        CheckRevision(collection, id, current, expectedRevision);
        var revision = NextRevision(connection, tx);
        Write(connection, tx, $"UPDATE \"{table}\" SET body = $body, revision = $rev WHERE id = $id", id, json, revision);
        tx.Commit();
        _db.Changed(table);
        return new StoredDocument(id, JsonNode.Parse(json)!.AsObject(), Etag(revision));
    }

    public async Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default)
    {
        var table = SqliteDatabase.TableFor(collection);
        var json = Serialize(body);
        await using var connection = await OpenAsync(table, ct);
        using var tx = connection.BeginTransaction();
        var revision = NextRevision(connection, tx);
        Write(connection, tx,
            $"INSERT INTO \"{table}\"(id, body, revision) VALUES ($id, $body, $rev) ON CONFLICT(id) DO UPDATE SET body = excluded.body, revision = excluded.revision",
            id, json, revision);
        tx.Commit();
        _db.Changed(table);
        return new StoredDocument(id, JsonNode.Parse(json)!.AsObject(), Etag(revision));
    }

    public async Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default)
    {
        var table = SqliteDatabase.TableFor(collection);
        await using var connection = await OpenAsync(table, ct);
        using var tx = connection.BeginTransaction();
        var current = Read(connection, tx, table, id);
        if (current is null) return null;
        CheckRevision(collection, id, current, expectedRevision);
        using (var command = connection.CreateCommand())
        {
            command.Transaction = tx;
            command.CommandText = $"DELETE FROM \"{table}\" WHERE id = $id";
            command.Parameters.AddWithValue("$id", id);
            command.ExecuteNonQuery();
        }
        tx.Commit();
        _db.Changed(table);
        return current;
    }

    // Rows deleted per transaction when trimming: each holds the write lock for milliseconds, not seconds.
    internal const int TrimChunk = 5000;

    public async Task<int> TrimByIdAsync(string collection, string? idsBelow, int? keepNewest, CancellationToken ct = default)
    {
        if (keepNewest < 0) throw new ArgumentOutOfRangeException(nameof(keepNewest), keepNewest, "the number of documents to keep must be 0 or more");
        var table = SqliteDatabase.TableFor(collection);
        var removed = 0;
        if (idsBelow is not null) removed += await DeleteIdsUpToAsync(table, idsBelow, inclusive: false, ct);
        if (keepNewest is not { } keep) return removed;
        string? newestToGo;
        await using (var connection = await OpenAsync(table, ct))
        {
            // Walks the primary key's index from the top: as fast with a million rows as with a thousand.
            using var command = connection.CreateCommand();
            command.CommandText = $"SELECT id FROM \"{table}\" ORDER BY id DESC LIMIT 1 OFFSET $keep";
            command.Parameters.AddWithValue("$keep", keep);
            newestToGo = command.ExecuteScalar() as string;
        }
        if (newestToGo is not null) removed += await DeleteIdsUpToAsync(table, newestToGo, inclusive: true, ct);
        return removed;
    }

    // Deletes the ids below (or up to) the bound, lowest first, TrimChunk per transaction.
    private async Task<int> DeleteIdsUpToAsync(string table, string bound, bool inclusive, CancellationToken ct)
    {
        var removed = 0;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            int deleted;
            await using (var connection = await OpenAsync(table, ct))
            {
                using var tx = connection.BeginTransaction();
                using var command = connection.CreateCommand();
                command.Transaction = tx;
                command.CommandText = $"DELETE FROM \"{table}\" WHERE id IN (SELECT id FROM \"{table}\" WHERE id {(inclusive ? "<=" : "<")} $bound ORDER BY id LIMIT {TrimChunk})";
                command.Parameters.AddWithValue("$bound", bound);
                deleted = command.ExecuteNonQuery();
                tx.Commit();
            }
            if (deleted > 0) _db.Changed(table);
            removed += deleted;
            if (deleted < TrimChunk) return removed;
        }
    }

    public async Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        if (query.Skip < 0) throw Problems.BadRequest($"skip must be 0 or more, got {query.Skip}");
        if (query.Limit < 0) throw Problems.BadRequest($"limit must be 0 or more, got {query.Limit}");
        var table = SqliteDatabase.TableFor(collection);
        await using var connection = await OpenAsync(table, ct);
        return _queries.Run(connection, table, query, ct);
    }

    /// <summary>SQLite's plan for <paramref name="query"/> (<see cref="SqliteQueryRunner.Explain"/>): which indexes it reads.</summary>
    internal async Task<string> ExplainAsync(string collection, DocumentQuery query, CancellationToken ct = default)
    {
        var table = SqliteDatabase.TableFor(collection);
        await using var connection = await OpenAsync(table, ct);
        return _queries.Explain(connection, table, query);
    }

    private async Task<SqliteConnection> OpenAsync(string table, CancellationToken ct)
    {
        var connection = await _db.OpenAsync(ct);
        EnsureTable(connection, table);
        return connection;
    }

    private void EnsureTable(SqliteConnection connection, string table) =>
        _db.EnsureTable(connection, table,
            $"CREATE TABLE IF NOT EXISTS \"{table}\" (id TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL, revision INTEGER NOT NULL);" +
            $"CREATE TABLE IF NOT EXISTS {SequenceTable} (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);" +
            $"INSERT OR IGNORE INTO {SequenceTable}(name, value) VALUES ('revision', 0);" +
            // An existing data directory gets (or loses) the decision indexes at its first use here, retention's prune at start.
            (table == DecisionTable.Name ? DecisionTable.CreateIndexes(table, _decisionIndexes) : ""));

    private static StoredDocument? Read(SqliteConnection connection, SqliteTransaction? tx, string table, string id)
    {
        using var command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = $"SELECT body, revision FROM \"{table}\" WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        using var reader = command.ExecuteReader();
        if (!reader.Read()) return null;
        return new StoredDocument(id, JsonNode.Parse(reader.GetString(0))!.AsObject(), Etag(reader.GetInt64(1)));
    }

    private static bool Exists(SqliteConnection connection, SqliteTransaction tx, string table, string id)
    {
        using var command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = $"SELECT 1 FROM \"{table}\" WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        return command.ExecuteScalar() is not null;
    }

    private static long NextRevision(SqliteConnection connection, SqliteTransaction tx)
    {
        using var command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = $"UPDATE {SequenceTable} SET value = value + 1 WHERE name = 'revision' RETURNING value";
        return (long)command.ExecuteScalar()!;
    }

    private static void Write(SqliteConnection connection, SqliteTransaction tx, string sql, string id, string json, long revision)
    {
        using var command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = sql;
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$body", json);
        command.Parameters.AddWithValue("$rev", revision);
        command.ExecuteNonQuery();
    }

    private static void CheckRevision(string collection, string id, StoredDocument current, string? expected)
    {
        if (expected is not null && !string.Equals(Unquote(expected), current.Revision, StringComparison.Ordinal))
            throw DocumentStoreProblems.ChangedSince(collection, id, expected, current.Revision);
    }

    /// <summary>Accepts an ETag with or without its HTTP quotes.</summary>
    private static string Unquote(string etag)
    {
        var s = etag.Trim();
        if (s.StartsWith("W/", StringComparison.Ordinal)) s = s[2..];
        return s.Length >= 2 && s[0] == '"' && s[^1] == '"' ? s[1..^1] : s;
    }

    internal static string Etag(long revision) => revision.ToString(CultureInfo.InvariantCulture);

    private static string Serialize(JsonObject body)
    {
        ArgumentNullException.ThrowIfNull(body);
        DocumentDepth.Ensure(body, DocumentDepth.MaxStored);
        return body.ToJsonString();
    }
}
