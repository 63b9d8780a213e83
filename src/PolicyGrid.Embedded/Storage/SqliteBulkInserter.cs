using System.Text.Json;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using SQLitePCL;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// Batches of new documents (<see cref="SqliteDocumentStore.CreateManyAsync{T}"/>, the decision log's writes) through one
/// full-sync connection whose statements are prepared once, one batch at a time, each in one transaction. Opening a
/// pooled connection and preparing four statements for every batch cost about 45 µs of CPU, as much as a dozen rows,
/// and under load a batch is written every few milliseconds. Rows go from the writer's UTF-8 straight into the insert
/// (Microsoft.Data.Sqlite binds only strings, and runs each execution through a data reader), bound as text, so
/// they are stored exactly as a bound string would be. The connection closes after a second without batches.
/// </summary>
#pragma warning disable CA1001 // the semaphore holds no wait handle, and the inserter lives as long as its store
internal sealed class SqliteBulkInserter(Func<CancellationToken, Task<SqliteConnection>> open, Action<SqliteConnection, string> ensureTable, string sequenceTable)
{
    private const int PrimaryKeyTaken = 1555; // SQLITE_CONSTRAINT_PRIMARYKEY, an extended result code
    private static readonly TimeSpan IdleClose = TimeSpan.FromSeconds(1);

    private readonly SemaphoreSlim gate = new(1, 1);
    private readonly Dictionary<string, sqlite3_stmt> statements = new(StringComparer.Ordinal);
    private SqliteConnection? connection;
    private Timer? idle;

    /// <summary>
    /// Inserts every item into <paramref name="table"/> (id, body, revision) or none, with revisions taken from the
    /// sequence as one range; 409 when an id is taken.
    /// </summary>
    public async Task InsertAsync<T>(string collection, string table, IReadOnlyList<T> items, Func<T, string> id, Action<Utf8JsonWriter, T> write, CancellationToken ct)
    {
        await gate.WaitAsync(ct);
        try
        {
            var db = (connection ??= await open(ct)).Handle!;
            ensureTable(connection, table);
            var insert = Statement(db, $"INSERT INTO \"{table}\"(id, body, revision) VALUES (?1, ?2, ?3)");
            var reserve = Statement(db, $"UPDATE {sequenceTable} SET value = value + ?1 WHERE name = 'revision' RETURNING value");
            Run(db, Statement(db, "BEGIN IMMEDIATE"));
            Check(db, raw.sqlite3_bind_int64(reserve, 1, items.Count));
            Check(db, raw.sqlite3_step(reserve), raw.SQLITE_ROW); // the update is made by this first step
            var revision = raw.sqlite3_column_int64(reserve, 0) - items.Count;
            raw.sqlite3_reset(reserve);
            // A body that is not one object throws here, and the transaction, rolled back below, stores nothing.
            DocumentBodies.WriteEach(collection, items, id, write, (key, json) =>
            {
                Check(db, raw.sqlite3_bind_text(insert, 1, key));
                Check(db, raw.sqlite3_bind_text(insert, 2, json));
                Check(db, raw.sqlite3_bind_int64(insert, 3, ++revision));
                var rc = raw.sqlite3_step(insert);
                if (rc != raw.SQLITE_DONE && raw.sqlite3_extended_errcode(db) == PrimaryKeyTaken)
                    throw DocumentStoreProblems.Duplicate(collection, key);
                Check(db, rc, raw.SQLITE_DONE);
                raw.sqlite3_reset(insert);
            });
            Run(db, Statement(db, "COMMIT"));
        }
        catch
        {
            // Whatever failed, the next batch starts on a fresh connection with nothing of this one's transaction.
            Close();
            throw;
        }
        finally
        {
            (idle ??= new Timer(static i => ((SqliteBulkInserter)i!).CloseIfIdle(), this, Timeout.Infinite, Timeout.Infinite))
                .Change(IdleClose, Timeout.InfiniteTimeSpan);
            gate.Release();
        }
    }

    private sqlite3_stmt Statement(sqlite3 db, string sql)
    {
        if (statements.TryGetValue(sql, out var statement)) return statement;
        var rc = raw.sqlite3_prepare_v2(db, sql, out statement);
        if (rc != raw.SQLITE_OK)
        {
            statement.Dispose();
            SqliteException.ThrowExceptionForRC(rc, db);
        }
        statements[sql] = statement;
        return statement;
    }

    private static void Run(sqlite3 db, sqlite3_stmt statement)
    {
        Check(db, raw.sqlite3_step(statement), raw.SQLITE_DONE);
        raw.sqlite3_reset(statement);
    }

    // A failed statement is left as it is: the batch closes the connection, finalizing it.
    private static void Check(sqlite3 db, int rc, int expected = raw.SQLITE_OK)
    {
        if (rc != expected) SqliteException.ThrowExceptionForRC(rc, db);
    }

    private void CloseIfIdle()
    {
        if (!gate.Wait(0)) return; // a batch is running; it schedules the next check when it ends
        try { Close(); }
        finally { gate.Release(); }
    }

    private void Close()
    {
        foreach (var statement in statements.Values) statement.Dispose();
        statements.Clear();
        // A handle goes back to the pool only outside a transaction (one a failed batch left open is rolled back).
        if (connection?.Handle is { } db && raw.sqlite3_get_autocommit(db) == 0) raw.sqlite3_exec(db, "ROLLBACK");
        connection?.Dispose();
        connection = null;
    }
}
#pragma warning restore CA1001
