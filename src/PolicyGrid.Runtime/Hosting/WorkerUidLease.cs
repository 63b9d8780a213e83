using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// Uids reserved for one pool's worker slots, one each, so no policy can signal, trace or starve a
/// worker of another slot (or of another pool, or any other process on the host): a process may
/// signal only processes of its own uid, and <c>RLIMIT_NPROC</c> counts per uid. A uid is taken only
/// when no account or group has it, no process runs as it, and no other pool (in this process or
/// another) holds it. A pool holds a uid by binding an abstract Unix socket named after it: the name
/// is exclusive on the host (per network namespace), lives in no directory another user could plant
/// links in, and is freed by the kernel when the lease is disposed or its process dies.
/// </summary>
internal sealed partial class WorkerUidLease : IDisposable
{
    // How far past the start the search goes before it gives up (an exhausted range is a misconfiguration).
    internal const int SearchSpan = 1 << 16;

    private readonly List<Socket> locks;

    private WorkerUidLease(List<int> uids, List<Socket> locks)
    {
        Uids = uids;
        this.locks = locks;
    }

    public IReadOnlyList<int> Uids { get; }

    /// <summary>
    /// Reserves <paramref name="count"/> free uids at or above <paramref name="start"/>. <paramref name="taken"/>
    /// says which uids the host already uses (default: <see cref="UsedOnHost"/>); <paramref name="names"/> prefixes
    /// the lock names (tests use their own).
    /// </summary>
    public static WorkerUidLease Reserve(int count, int start, Func<int, bool>? taken = null, string names = DefaultNames)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(start, 1);
        taken ??= UsedOnHost();
        var uids = new List<int>(count);
        var locks = new List<Socket>(count);
        for (var uid = start; uids.Count < count && uid - start < SearchSpan && uid < int.MaxValue; uid++)
        {
            if (taken(uid)) continue;
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                // A leading NUL names an abstract socket: no file, and a second bind of the name fails.
                socket.Bind(new UnixDomainSocketEndPoint("\0" + names + uid.ToString(CultureInfo.InvariantCulture)));
                locks.Add(socket);
                uids.Add(uid);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                socket.Dispose(); // another pool holds it
            }
        }
        if (uids.Count < count)
        {
            foreach (var held in locks) held.Dispose();
            throw new InvalidOperationException(
                $"found {uids.Count} of the {count} free uids needed for policy workers in {start}..{start + SearchSpan - 1}; set PolicyGrid:Runtime:Pool:WorkerUidStart to an unused range");
        }
        return new WorkerUidLease(uids, locks);
    }

    /// <summary>The abstract socket names pools hold their uids by: this, then the uid.</summary>
    public const string DefaultNames = "policygrid/worker-uid/";

    /// <summary>
    /// Uids the host uses: an account or a group with that id (through NSS, so directory users count), or a
    /// running process with it as any of its user ids (read once, now).
    /// </summary>
    public static Func<int, bool> UsedOnHost()
    {
        var running = RunningUids();
        return uid => running.Contains(uid) || HasAccount(uid);
    }

    private static HashSet<int> RunningUids()
    {
        var uids = new HashSet<int>();
        if (!Directory.Exists("/proc")) return uids;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _)) continue;
            try
            {
                foreach (var line in File.ReadLines(Path.Combine(dir, "status")))
                {
                    if (!line.StartsWith("Uid:", StringComparison.Ordinal)) continue;
                    foreach (var field in line[4..].Split('\t', StringSplitOptions.RemoveEmptyEntries))
                        if (int.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out var uid)) uids.Add(uid);
                    break;
                }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return uids;
    }

    private static readonly Lock NssGate = new();

    private static bool HasAccount(int uid)
    {
        if (OperatingSystem.IsWindows()) return false;
        // getpwuid/getgrgid share static buffers: one lookup at a time, and only whether there is an entry is read.
        lock (NssGate) return getpwuid((uint)uid) != 0 || getgrgid((uint)uid) != 0;
    }

    public void Dispose()
    {
        foreach (var held in locks) held.Dispose();
        locks.Clear();
    }

    [LibraryImport("libc")]
    private static partial nint getpwuid(uint uid);

    [LibraryImport("libc")]
    private static partial nint getgrgid(uint gid);
}
