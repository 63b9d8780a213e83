namespace PolicyGrid.Core.Errors;

/// <summary>
/// A write the server's own disk refused, in the contract's terms: full (or over quota), read-only, or failing is a
/// 503 <c>backend_unavailable</c> saying so (never a 400 blaming the caller's data, never a 500). The message names
/// the cause, not the server's paths: whoever runs the server finds the whole exception in its log.
/// </summary>
public static class DiskFailures
{
    // errno values as .NET on Unix carries them in IOException.HResult, and the Windows HRESULTs of a full disk.
    private const int Eio = 5, Enospc = 28, Erofs = 30, Edquot = 122;
    private const int WindowsDiskFull = unchecked((int)0x80070070), WindowsHandleDiskFull = unchecked((int)0x80070027);

    /// <summary>The 503 for the first I/O failure in <paramref name="e"/> or the exceptions it wraps that is the disk's refusal, or null.</summary>
    public static PolicyGridException? In(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is IOException io && Of(io) is { } disk) return disk;
        return null;
    }

    /// <summary>The 503 for <paramref name="e"/> when it is the disk's refusal, or null for any other I/O failure.</summary>
    public static PolicyGridException? Of(IOException e) => e.HResult switch
    {
        Enospc or WindowsDiskFull or WindowsHandleDiskFull => Full("no space left on device", e),
        Edquot => Full("disk quota exceeded", e),
        Erofs => ReadOnly("read-only file system", e),
        Eio => Failing("input/output error", e),
        _ => null,
    };

    public static PolicyGridException Full(string detail, Exception e) =>
        Problems.BackendUnavailable($"the server's storage is full ({detail}); retry once space has been freed on the server's disk", e);

    public static PolicyGridException ReadOnly(string detail, Exception e) =>
        Problems.BackendUnavailable($"the server's storage cannot be written ({detail}); retry once its data directory is writable again", e);

    public static PolicyGridException Failing(string detail, Exception e) =>
        Problems.BackendUnavailable($"the server's storage failed ({detail}); retry, and if it persists its operator should check the server's disk", e);
}
