using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// The single SQLite file behind the embedded shape. Every operation opens its own pooled
/// connection, so any number of callers may use it at once; SQLite serializes the writers.
/// WAL with <c>synchronous=FULL</c> means a write is on disk (WAL fsynced) before its task completes,
/// so an acknowledged write survives a kill -9 or a power cut.
/// </summary>
public sealed partial class SqliteDatabase
{
    private readonly string _connectionString;
    // The same file through a pool of its own, whose handles commit with synchronous=NORMAL (the hot-path Writer's).
    // Microsoft.Data.Sqlite pools by connection string: this one differs only in spelling out SQLite's default
    // Recursive Triggers=False, so its handles are never handed to callers that expect full syncs.
    private readonly string _relaxedConnectionString;
    private readonly ConditionalWeakTable<SQLitePCL.sqlite3, object> _relaxedHandles = new();
    private readonly ConcurrentDictionary<string, bool> _knownTables = new(StringComparer.Ordinal);

    // Physical connections (SQLite handles) whose per-connection pragmas are already set. The pool
    // hands the same handle out again and again, and pragmas live on the handle, so they are set
    // once per handle rather than on every open (that cost more than the query itself). Keyed weakly
    // so handles the pool closes are forgotten with them.
    private readonly ConditionalWeakTable<SQLitePCL.sqlite3, object> _preparedHandles = new();

    // What this process knows of each database file, shared by path so that every store object on one
    // file sees every write made through any of them: committed writes per table (IDocumentChangeCounter)
    // and the context reads they invalidate (ContextReadCache).
    private sealed class FileState
    {
        public ConcurrentDictionary<string, StrongBox<long>> Changes { get; } = new(StringComparer.Ordinal);
        public ContextReadCache Contexts { get; } = new();
        public SqliteWriter? Writer;
    }

    private static readonly ConcurrentDictionary<string, FileState> Files = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, StrongBox<long>> _changes;
    private readonly FileState _state;

    public SqliteDatabase(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        // A file made anew (say a data directory removed and created again under the same name) starts
        // with nothing remembered about the one that was there before.
        IsNew = !File.Exists(Path);
        var state = IsNew ? Files[Path] = new FileState() : Files.GetOrAdd(Path, _ => new FileState());
        _state = state;
        _changes = state.Changes;
        ContextCache = state.Contexts;
        var directory = System.IO.Path.GetDirectoryName(Path);
        if (!string.IsNullOrEmpty(directory)) Directory.CreateDirectory(directory);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = Path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
        _relaxedConnectionString = new SqliteConnectionStringBuilder(_connectionString) { RecursiveTriggers = false }.ToString();
        if (_relaxedConnectionString == _connectionString) throw new InvalidOperationException("the relaxed connection pool needs a connection string of its own");
        using var connection = new SqliteConnection(_connectionString);
        connection.Open();
        // journal_mode is stored in the file; set once. The per-connection pragmas are set once per handle (OpenAsync).
        Execute(connection, "PRAGMA journal_mode=WAL;");
    }

    public string Path { get; }

    /// <summary>True when this object created the database file.</summary>
    public bool IsNew { get; }

    /// <summary>Context reads remembered for this file, shared by every database object on it in this process.</summary>
    internal ContextReadCache ContextCache { get; }

    private static readonly object Prepared = new();

    public Task<SqliteConnection> OpenAsync(CancellationToken ct) =>
        OpenAsync(_connectionString, _preparedHandles, "PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000; PRAGMA foreign_keys=ON;", ct);

    // Opens a pooled connection and sets the per-connection pragmas once per physical handle (see _preparedHandles).
    private static async Task<SqliteConnection> OpenAsync(string connectionString, ConditionalWeakTable<SQLitePCL.sqlite3, object> prepared,
        string pragmas, CancellationToken ct)
    {
        var connection = new SqliteConnection(connectionString);
        try
        {
            await connection.OpenAsync(ct);
            var handle = connection.Handle!;
            if (!prepared.TryGetValue(handle, out _))
            {
                Execute(connection, pragmas);
                prepared.AddOrUpdate(handle, Prepared);
            }
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Longest a commit made through <see cref="Writer"/> (synchronous=NORMAL: in the write-ahead log when it
    /// returns, so it survives the server process dying at once) waits to be synced to disk, by one background
    /// sync shared by every write in that interval (a sync per write costs more than the write; any later
    /// full-sync commit on the file, such as the decision log's, syncs it too).
    /// </summary>
    public static readonly TimeSpan WalSyncInterval = TimeSpan.FromMilliseconds(5);

    private int _walSyncScheduled;

    /// <summary>
    /// Hot-path writes on this file (<see cref="SqliteWriter"/>): one connection with statements prepared once, group
    /// commits, synchronous=NORMAL (see <see cref="WalSyncInterval"/>). Shared by every database object on the file.
    /// </summary>
    internal SqliteWriter Writer
    {
        get
        {
            if (Volatile.Read(ref _state.Writer) is { } writer) return writer;
            Interlocked.CompareExchange(ref _state.Writer, new SqliteWriter(OpenRelaxedAsync, SyncWalSoon), null);
            return _state.Writer;
        }
    }

    // A connection from the relaxed pool: the same per-handle pragmas as OpenAsync, but synchronous=NORMAL.
    private Task<SqliteConnection> OpenRelaxedAsync(CancellationToken ct) =>
        OpenAsync(_relaxedConnectionString, _relaxedHandles, "PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000; PRAGMA foreign_keys=ON;", ct);

    private void SyncWalSoon()
    {
        if (Interlocked.Exchange(ref _walSyncScheduled, 1) == 1) return;
        _ = Task.Run(async () =>
        {
            await Task.Delay(WalSyncInterval);
            // Cleared before the sync: a commit landing during it schedules the next one.
            Volatile.Write(ref _walSyncScheduled, 0);
            SyncWal();
        });
    }

    /// <summary>Syncs the write-ahead log to disk (what <c>synchronous=FULL</c> does at every commit).</summary>
    public void SyncWal()
    {
        try
        {
            using var wal = File.OpenHandle(Path + "-wal", FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            RandomAccess.FlushToDisk(wal);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            // No log: the last connection closed and checkpointed it into the database (syncing both),
            // or the data directory itself is gone.
        }
    }

    /// <summary>How many writes to <paramref name="table"/> have committed through this file in this process.</summary>
    public long ChangesTo(string table) => _changes.TryGetValue(table, out var count) ? Volatile.Read(ref count.Value) : 0;

    /// <summary>Counts a committed write to <paramref name="table"/>; call after the commit.</summary>
    public void Changed(string table) => Interlocked.Increment(ref _changes.GetOrAdd(table, static _ => new StrongBox<long>()).Value);

    /// <summary>True once <see cref="EnsureTable"/> made <paramref name="table"/> in this process.</summary>
    public bool HasTable(string table) => _knownTables.ContainsKey(table);

    /// <summary>Creates a table once per process (idempotent in SQL too, so several processes may race).</summary>
    public void EnsureTable(SqliteConnection connection, string table, string createSql)
    {
        if (_knownTables.ContainsKey(table)) return;
        Execute(connection, createSql);
        _knownTables[table] = true;
    }

    internal static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    [GeneratedRegex("^[a-z][a-z0-9_]{0,62}$", RegexOptions.CultureInvariant)]
    private static partial Regex SafeName();

    /// <summary>
    /// Collection names become table names, which SQL cannot parameterize, so only a strict
    /// pattern is allowed through.
    /// </summary>
    public static string TableFor(string collection)
    {
        if (collection is null || !SafeName().IsMatch(collection))
            throw Problems.BadRequest($"collection name '{collection}' is not allowed: use 1-63 lowercase letters, digits or '_', starting with a letter");
        return "doc_" + collection;
    }
}
