using Microsoft.Data.Sqlite;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// Small writes on the hot path (context, and with it Type 4 state, after every call that changes it) through one
/// connection per database file whose statements are prepared once, committed in groups: the writes that queue
/// while one commit runs go together in the next transaction. Each write has committed (synchronous=NORMAL: in the
/// WAL, synced to disk by <see cref="SqliteDatabase"/> within its WAL sync interval) before its task completes.
/// A write that fails in a group is tried again alone, so it fails alone. The connection closes after a second
/// without writes.
/// </summary>
internal sealed class SqliteWriter(Func<CancellationToken, Task<SqliteConnection>> open, Action committed)
{
    private const int MaxGroup = 256;
    private static readonly TimeSpan IdleClose = TimeSpan.FromSeconds(1);

    private readonly Lock gate = new();
    private readonly Queue<Write> queued = new();
    private readonly Dictionary<string, SqliteCommand> commands = new(StringComparer.Ordinal);
    private bool running;
    private SqliteConnection? connection;
    private Timer? idle;

    /// <summary>Commits made so far (a group of writes is one), for tests and diagnostics.</summary>
    internal long Commits => Interlocked.Read(ref commits);
    private long commits;

    /// <summary>Whether the writer holds its connection now (it lets it go after a second without writes).</summary>
    internal bool IsOpen
    {
        get { lock (gate) return connection is not null; }
    }

    private sealed record Write(string Sql, Action<SqliteParameterCollection> Bind, TaskCompletionSource Done);

    /// <summary>Commits one statement; <paramref name="bind"/> sets its parameters (see <see cref="Set"/>).</summary>
    public Task WriteAsync(string sql, Action<SqliteParameterCollection> bind)
    {
        var write = new Write(sql, bind, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        lock (gate)
        {
            queued.Enqueue(write);
            if (running) return write.Done.Task;
            running = true;
        }
        // No commit is running: this caller commits its own group on its own thread (a lone write pays no
        // thread hop), and whatever queued meanwhile goes on in the background.
        _ = RunAsync();
        return write.Done.Task;
    }

    /// <summary>Sets a parameter, adding it the first time the statement is used.</summary>
    public static void Set(SqliteParameterCollection parameters, string name, object? value)
    {
        if (parameters.Contains(name)) parameters[name].Value = value ?? DBNull.Value;
        else parameters.AddWithValue(name, value ?? DBNull.Value);
    }

    private async Task RunAsync()
    {
        var group = new List<Write>();
        for (var round = 0; ; round++)
        {
            lock (gate)
            {
                while (group.Count < MaxGroup && queued.TryDequeue(out var next)) group.Add(next);
                if (group.Count == 0)
                {
                    running = false;
                    (idle ??= new Timer(static w => ((SqliteWriter)w!).CloseIfIdle(), this, Timeout.Infinite, Timeout.Infinite))
                        .Change(IdleClose, Timeout.InfiniteTimeSpan);
                    return;
                }
            }
            if (round == 1) await Task.Yield(); // later groups: off the first caller's thread
            try
            {
                connection ??= await open(CancellationToken.None);
                Commit(group);
                Interlocked.Increment(ref commits);
                committed();
                foreach (var write in group) write.Done.TrySetResult();
            }
            catch (Exception e)
            {
                // Nothing may escape the loop: every write in the group hears what went wrong.
                foreach (var write in group) write.Done.TrySetException(e);
                Close();
            }
            group.Clear();
        }
    }

    // One write commits on its own; several share a transaction, and if that fails each is tried alone, so a bad
    // write fails alone. A lock held too long by another process (busy, locked) fails them all instead: trying
    // each again would wait as long again.
    private void Commit(List<Write> group)
    {
        if (group.Count > 1)
        {
            try
            {
                Run("BEGIN IMMEDIATE");
                foreach (var write in group) Execute(write);
                Run("COMMIT");
                return;
            }
            catch (SqliteException e) when (!IsLockTimeout(e))
            {
                try { Run("ROLLBACK"); } catch (SqliteException) { }
            }
        }
        foreach (var write in group)
        {
            try { Execute(write); }
            catch (SqliteException e) when (!IsLockTimeout(e)) { write.Done.TrySetException(e); }
        }
    }

    private static bool IsLockTimeout(SqliteException e) => e.SqliteErrorCode is 5 or 6; // SQLITE_BUSY, SQLITE_LOCKED

    private void Execute(Write write)
    {
        var command = CommandFor(write.Sql);
        write.Bind(command.Parameters);
        command.ExecuteNonQuery();
    }

    private void Run(string sql) => CommandFor(sql).ExecuteNonQuery();

    private SqliteCommand CommandFor(string sql)
    {
        if (commands.TryGetValue(sql, out var command)) return command;
        command = connection!.CreateCommand();
        command.CommandText = sql;
        commands[sql] = command;
        return command;
    }

    private void CloseIfIdle()
    {
        lock (gate)
        {
            if (!running) Close();
        }
    }

    private void Close()
    {
        // A handle goes back to the pool only outside a transaction (one a failed group left open is rolled back).
        if (connection?.Handle is { } handle && SQLitePCL.raw.sqlite3_get_autocommit(handle) == 0)
        {
            try { Run("ROLLBACK"); } catch (SqliteException) { }
        }
        foreach (var command in commands.Values) command.Dispose();
        commands.Clear();
        connection?.Dispose();
        connection = null;
    }
}
