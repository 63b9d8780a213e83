namespace PolicyGrid.Cli.Serve;

/// <summary>
/// One server per data directory. The server keeps what it read of its policies and context in memory
/// until it writes them itself (docs/embedded.md), and serializes context keys and wakes job waiters in
/// its own process: a second server on the same directory would run retired policies and race on
/// context. So <c>serve</c> holds an exclusive lock on <c>&lt;data&gt;/policygrid.lock</c> while it runs
/// (released when the server stops, or by the kernel when the process dies), and a second one is refused.
/// Local job runners share the directory on purpose and take no lock.
/// </summary>
public sealed class DataDirectoryLock : IDisposable
{
    public const string FileName = "policygrid.lock";
    private const string DatabaseFile = PolicyGrid.Embedded.Storage.EmbeddedStorage.DatabaseFile;
    private readonly FileStream held;
    private readonly string directory;
    private readonly string? heldAt;

    private DataDirectoryLock(FileStream held, string directory)
    {
        this.held = held;
        this.directory = directory;
        heldAt = OpenAt(held);
    }

    // Where the kernel says the held file is now (Linux: the link /proc/self/fd/N), or null where that cannot be told.
    private static string? OpenAt(FileStream file)
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            return new FileInfo($"/proc/self/fd/{file.SafeFileHandle.DangerousGetHandle()}").LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>
    /// Null while the lock file is where it was taken; else what became of the data directory (or of the lock file alone)
    /// and what to do, in whole sentences. Removed (rm -rf) or moved
    /// away under a running server, the server went on answering every write with success while SQLite wrote into the
    /// removed files through the handles it held: all of it gone at the next start, and a second server could start
    /// on the directory made again in its place.
    /// </summary>
    public string? Lost()
    {
        if (heldAt is null) return null;
        var now = OpenAt(held);
        if (now is null || now == heldAt) return null;
        // The lock file alone removed (an operator clearing what looked like a stale lock): the directory and its database
        // are still there and nothing is lost, but a second serve could now start on it beside this one. This was told as
        // the whole directory removed, "what it stored since is lost", which was not so.
        // Not so when the directory and database seen there now were made anew after a rm -rf (this server's next bundle
        // upload or job makes the directory again, a new SQLite connection the database): the database this process opened
        // is then among its open files as deleted.
        if (now == heldAt + " (deleted)" && Directory.Exists(directory) && File.Exists(Path.Combine(directory, DatabaseFile))
            && !HoldsDeleted(Path.Combine(Path.GetFullPath(directory), DatabaseFile)))
            return $"the lock file {Path.Combine(directory, FileName)} was removed while the server ran, so a second server could start on {directory} "
                + "beside this one. Stopped, so that one server at a time uses it; nothing stored is lost: start it again, and leave policygrid.lock "
                + "in place (the kernel releases it when the server stops, even after kill -9)";
        return (now.EndsWith(" (deleted)", StringComparison.Ordinal)
            ? $"the data directory {directory} was removed while the server ran: what it stored since is lost, as would be every later write"
            : $"the data directory {directory} was moved to {Path.GetDirectoryName(now)} while the server ran: its data is there now, "
                + $"and a server started on {directory} would not see it")
            + ". Stopped: put the data directory back (or let the server start on an empty one) and start it again";
    }

    // Whether this process has a file open that was at path and is deleted now (Linux: /proc/self/fd). Only asked once the
    // lock file is gone, never while all is well.
    private static bool HoldsDeleted(string path)
    {
        var deleted = path + " (deleted)";
        try
        {
            foreach (var fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
            {
                try
                {
                    if (new FileInfo(fd).LinkTarget == deleted) return true;
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Closed meanwhile.
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return false;
    }

    public static DataDirectoryLock Acquire(string dataDirectory)
    {
        var path = Path.Combine(dataDirectory, FileName);
        try
        {
            // FileShare.None is an exclusive, non-blocking flock on Unix (an exclusive share mode on Windows).
            return new DataDirectoryLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None), dataDirectory);
        }
        catch (IOException)
        {
            throw new ServeRefusedException(
                $"the data directory {dataDirectory} is in use by another running policygrid serve (it holds {path}); " +
                "stop that server, or give this one another --data directory");
        }
    }

    public void Dispose() => held.Dispose();
}

/// <summary>
/// Makes the host's container own the lock: hosted services are created when the host starts (also when
/// a test host is built for the app and started without the rest of Program.Main running), so the lock
/// is disposed with the host's services and the next server on the directory may start. While the server runs it
/// looks every second whether its data directory is still there (<see cref="DataDirectoryLock.Lost"/>); once it is
/// not, the server stops, saying why (<see cref="ServeStopped"/>), rather than acknowledge writes that are lost.
/// </summary>
internal sealed class DataDirectoryLockHolder(DataDirectoryLock held, ServeStopped stopped, Microsoft.Extensions.Hosting.IHostApplicationLifetime lifetime,
    Microsoft.Extensions.Logging.ILogger<DataDirectoryLockHolder> logger) : Microsoft.Extensions.Hosting.BackgroundService
{
    public static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(1);

    public DataDirectoryLock Held { get; } = held;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(CheckInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                if (Held.Lost() is not { } why) continue;
                stopped.Reason = why;
                Microsoft.Extensions.Logging.LoggerExtensions.LogCritical(logger, "{Reason}", stopped.Reason);
                lifetime.StopApplication();
                return;
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
    }
}

/// <summary>Why a running server stopped itself (null when it was asked to stop): <c>serve</c> then exits 1 saying so.</summary>
public sealed class ServeStopped
{
    private volatile string? reason;

    public string? Reason
    {
        get => reason;
        set => reason = value;
    }
}
