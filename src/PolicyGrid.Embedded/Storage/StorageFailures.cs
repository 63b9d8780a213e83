using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// The embedded store's SQLite failures in the contract's terms, for every route that reads or writes through it
/// (its file writes fail with IOExceptions, which <see cref="DiskFailures"/> reads for every shape): a full disk, a read-only or failing file system and a database another process holds locked are
/// 503 <c>backend_unavailable</c> (the request may be retried once an operator has seen to it); a damaged database
/// file is 502 <c>backend_error</c>. SQLite rolls a failed write back and a bundle is only kept once wholly written
/// (its temporary file is removed), so the write that failed left nothing behind. The message names the cause, not the server's paths (the
/// server's log has the whole exception).
/// </summary>
public sealed class StorageFailures : IFailureTranslator
{
    public PolicyGridException? Translate(Exception failure)
    {
        for (var e = failure; e is not null; e = e.InnerException)
        {
            if (e is SqliteException s && FromSqlite(s) is { } translated) return translated;
        }
        return null;
    }

    private static PolicyGridException? FromSqlite(SqliteException e)
    {
        var detail = $"SQLite error {e.SqliteErrorCode}: {SqliteWords(e)}";
        return e.SqliteErrorCode switch
        {
            13 => DiskFailures.Full(detail, e), // SQLITE_FULL
            8 => DiskFailures.ReadOnly(detail, e), // SQLITE_READONLY
            10 or 14 => DiskFailures.Failing(detail, e), // SQLITE_IOERR, SQLITE_CANTOPEN
            5 or 6 => Problems.BackendUnavailable( // SQLITE_BUSY, SQLITE_LOCKED: past the connection's busy timeout
                $"the server's database stayed locked by another writer ({detail}); retry shortly", e),
            11 or 26 => Problems.BackendError( // SQLITE_CORRUPT, SQLITE_NOTADB
                $"the server's database file is damaged ({detail}); its operator must restore it from a backup", e),
            _ => null, // a constraint or an SQL error is ours: a 500 with a trace id
        };
    }

    // SqliteException's message is "SQLite Error 13: 'database or disk is full'." (no path); keep the quoted words.
    private static string SqliteWords(SqliteException e)
    {
        var message = e.Message;
        var open = message.IndexOf('\'', StringComparison.Ordinal);
        var close = message.LastIndexOf('\'');
        return open >= 0 && close > open ? message[(open + 1)..close] : message;
    }
}
