using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// The embedded store's disk and SQLite failures in the contract's terms, for every route that reads or writes
/// through it: a full disk, a read-only or failing file system and a database another process holds locked are
/// 503 <c>backend_unavailable</c> (the request may be retried once an operator has seen to it); a damaged database
/// file is 502 <c>backend_error</c>. SQLite rolls a failed write back and a bundle is only kept once wholly written
/// (its temporary file is removed), so the write that failed left nothing behind. The message names the cause, not the server's paths (the
/// server's log has the whole exception).
/// </summary>
public sealed class StorageFailures : IFailureTranslator
{
    // errno values as .NET on Unix carries them in IOException.HResult, and the Windows HRESULTs of the same.
    private const int Eio = 5, Enospc = 28, Erofs = 30, Edquot = 122;
    private const int WindowsDiskFull = unchecked((int)0x80070070), WindowsHandleDiskFull = unchecked((int)0x80070027);

    public PolicyGridException? Translate(Exception failure)
    {
        for (var e = failure; e is not null; e = e.InnerException)
        {
            var translated = e switch
            {
                SqliteException s => FromSqlite(s),
                IOException io => FromIo(io),
                _ => null,
            };
            if (translated is not null) return translated;
        }
        return null;
    }

    private static PolicyGridException? FromSqlite(SqliteException e)
    {
        var detail = $"SQLite error {e.SqliteErrorCode}: {SqliteWords(e)}";
        return e.SqliteErrorCode switch
        {
            13 => Full(detail, e), // SQLITE_FULL
            8 => ReadOnly(detail, e), // SQLITE_READONLY
            10 or 14 => Failing(detail, e), // SQLITE_IOERR, SQLITE_CANTOPEN
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

    private static PolicyGridException? FromIo(IOException e) => e.HResult switch
    {
        Enospc or WindowsDiskFull or WindowsHandleDiskFull => Full("no space left on device", e),
        Edquot => Full("disk quota exceeded", e),
        Erofs => ReadOnly("read-only file system", e),
        Eio => Failing("input/output error", e),
        _ => null,
    };

    private static PolicyGridException Full(string detail, Exception e) =>
        Problems.BackendUnavailable($"the server's storage is full ({detail}); retry once space has been freed on the server's disk", e);

    private static PolicyGridException ReadOnly(string detail, Exception e) =>
        Problems.BackendUnavailable($"the server's storage cannot be written ({detail}); retry once its data directory is writable again", e);

    private static PolicyGridException Failing(string detail, Exception e) =>
        Problems.BackendUnavailable($"the server's storage failed ({detail}); retry, and if it persists its operator should check the server's disk", e);
}
