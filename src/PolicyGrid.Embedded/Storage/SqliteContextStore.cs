using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// <see cref="IContextStore"/> on SQLite: one row per key with an optional expiry instant. Expired rows
/// are invisible at once and deleted lazily (on read, and in a sweep by at most one write a second). Reads are
/// remembered until a write to their key commits (<see cref="ContextReadCache"/>).
/// </summary>
public sealed class SqliteContextStore : IContextStore
{
    private const string Table = "pg_context";
    private readonly SqliteDatabase _db;
    private readonly TimeProvider _time;
    private readonly ContextReadCache _cache;

    public SqliteContextStore(SqliteDatabase db, TimeProvider? time = null)
    {
        _db = db;
        _time = time ?? TimeProvider.System;
        _cache = db.ContextCache;
    }

    public async Task<JsonObject?> GetAsync(string key, CancellationToken ct = default)
    {
        CheckKey(key);
        var now = Now();
        if (_cache.TryGet(key, now, out var known)) return Parse(known);
        var stamp = _cache.Stamp(key);
        await using var connection = await OpenAsync(ct);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT body, expires_at FROM {Table} WHERE key = $key";
        command.Parameters.AddWithValue("$key", key);
        string? body = null;
        long? expiresAt = null;
        var expired = false;
        using (var reader = command.ExecuteReader())
        {
            if (reader.Read())
            {
                expiresAt = reader.IsDBNull(1) ? null : reader.GetInt64(1);
                expired = expiresAt <= now;
                if (!expired) body = reader.GetString(0);
            }
        }
        if (expired) Purge(connection, key, now);
        else _cache.Remember(key, stamp, body, expiresAt);
        return Parse(body);
    }

    private static JsonObject? Parse(string? body) => body is null ? null : JsonNode.Parse(body)!.AsObject();

    public async Task SetAsync(string key, JsonObject context, TimeSpan? ttl, CancellationToken ct = default)
    {
        CheckKey(key);
        ArgumentNullException.ThrowIfNull(context);
        if (ttl is { } t && t <= TimeSpan.Zero) throw Problems.BadRequest($"context ttl must be positive, got {t.TotalSeconds} s");
        await EnsureTableAsync(ct);
        var now = Now();
        var body = context.ToJsonString();
        var expiresAt = ttl is { } d ? now + (long)Math.Ceiling(d.TotalMilliseconds) : (long?)null;
        // Committed before this returns (a call's context survives the server dying right after it
        // answers) and on disk within SqliteDatabase.WalSyncInterval: context is written on the hot path
        // of every call that changes it (Type 4 state after every call), where a disk sync each would
        // cost more than the call. Through the file's writer: one connection with the statement prepared
        // once, and writes that arrive together committed together.
        await _db.Writer.WriteAsync(Upsert, p =>
        {
            SqliteWriter.Set(p, "$key", key);
            SqliteWriter.Set(p, "$body", body);
            SqliteWriter.Set(p, "$exp", expiresAt);
        });
        if (SweepDue(now)) await _db.Writer.WriteAsync(Sweep, p => SqliteWriter.Set(p, "$now", now));
        _cache.Changed(key);
    }

    public async Task DeleteAsync(string key, CancellationToken ct = default)
    {
        CheckKey(key);
        await using var connection = await OpenAsync(ct);
        using var command = connection.CreateCommand();
        command.CommandText = $"DELETE FROM {Table} WHERE key = $key";
        command.Parameters.AddWithValue("$key", key);
        command.ExecuteNonQuery();
        _cache.Changed(key);
    }

    private const string Upsert =
        $"INSERT INTO {Table}(key, body, expires_at) VALUES ($key, $body, $exp) " +
        "ON CONFLICT(key) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at";

    private const string Sweep = $"DELETE FROM {Table} WHERE expires_at IS NOT NULL AND expires_at <= $now";

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    // Expired rows are invisible at once; deleting them is housekeeping, done by at most one write a second.
    private long _lastSweep;

    private bool SweepDue(long now)
    {
        var last = Interlocked.Read(ref _lastSweep);
        return now - last >= 1000 && Interlocked.CompareExchange(ref _lastSweep, now, last) == last;
    }

    private static void Purge(SqliteConnection connection, string key, long now)
    {
        using var command = connection.CreateCommand();
        command.CommandText = $"DELETE FROM {Table} WHERE key = $key AND expires_at IS NOT NULL AND expires_at <= $now";
        command.Parameters.AddWithValue("$key", key);
        command.Parameters.AddWithValue("$now", now);
        command.ExecuteNonQuery();
    }

    private static void CheckKey(string key)
    {
        if (string.IsNullOrEmpty(key)) throw Problems.BadRequest("context key must not be empty");
    }

    private async Task<SqliteConnection> OpenAsync(CancellationToken ct)
    {
        var connection = await _db.OpenAsync(ct);
        _db.EnsureTable(connection, Table, CreateTable);
        return connection;
    }

    private const string CreateTable =
        $"CREATE TABLE IF NOT EXISTS {Table} (key TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL, expires_at INTEGER NULL);" +
        $"CREATE INDEX IF NOT EXISTS {Table}_expiry ON {Table}(expires_at) WHERE expires_at IS NOT NULL;";

    // Writes go through the database's relaxed connections; the table is made (once) through an ordinary one.
    private async Task EnsureTableAsync(CancellationToken ct)
    {
        if (_db.HasTable(Table)) return;
        await using var connection = await OpenAsync(ct);
    }
}
