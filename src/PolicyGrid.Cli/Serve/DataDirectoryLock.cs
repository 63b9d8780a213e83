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
    private readonly FileStream held;

    private DataDirectoryLock(FileStream held) => this.held = held;

    public static DataDirectoryLock Acquire(string dataDirectory)
    {
        var path = Path.Combine(dataDirectory, FileName);
        try
        {
            // FileShare.None is an exclusive, non-blocking flock on Unix (an exclusive share mode on Windows).
            return new DataDirectoryLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
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
/// is disposed with the host's services and the next server on the directory may start.
/// </summary>
internal sealed class DataDirectoryLockHolder(DataDirectoryLock held) : Microsoft.Extensions.Hosting.IHostedService
{
    public DataDirectoryLock Held { get; } = held;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
