using System.Runtime.InteropServices;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// The few POSIX calls .NET does not expose: killing a whole process group (a policy's children
/// die with its worker), reaping orphans of that group, asking who we run as, and hiding from workers of our own uid.
/// </summary>
internal static partial class ProcessSignals
{
    private const int SigKill = 9;
    private const int WNoHang = 1;
    private const int PrSetChildSubreaper = 36;
    private const int PrSetDumpable = 4;

    public static bool IsRoot => OperatingSystem.IsLinux() || OperatingSystem.IsMacOS() ? geteuid() == 0 : false;

    /// <summary>SIGKILL to every process in group <paramref name="pgid"/>; false when the group is empty.</summary>
    public static bool KillGroup(int pgid) => pgid > 1 && kill(-pgid, SigKill) == 0;

    /// <summary>True while any process (zombies included) is still in the group.</summary>
    public static bool GroupExists(int pgid) => pgid > 1 && kill(-pgid, 0) == 0;

    /// <summary>
    /// Reaps exited children of ours that belong to group <paramref name="pgid"/>; answers how many. Only once the group's
    /// leader, when it is a <see cref="System.Diagnostics.Process"/> of ours, has been reaped by .NET (its HasExited): this
    /// would reap it too, and .NET ends the whole process when a child it started was reaped by someone else.
    /// </summary>
    public static int ReapGroup(int pgid)
    {
        var reaped = 0;
        while (pgid > 1 && waitpid(-pgid, out _, WNoHang) > 0) reaped++;
        return reaped;
    }

    /// <summary>
    /// Clears this process's dumpable flag (Linux only): its /proc files (environ, mem, maps, fds) then belong to
    /// root and ptrace needs CAP_SYS_PTRACE, so a process of the same uid (a policy worker of a server that is not
    /// root) can neither read its environment and memory nor trace it. Children get the flag back at execve.
    /// </summary>
    public static bool HideFromSameUser() => OperatingSystem.IsLinux() && prctl(PrSetDumpable, 0, 0, 0, 0) == 0;

    /// <summary>
    /// Reaps <paramref name="pid"/> if it is an exited child of ours (a policy's grandchild killed by
    /// <see cref="KillPipeHolders"/> was reparented to this subreaper, outside any worker's group); true too when it is not our child (nothing to reap), false while it still runs.
    /// A killed process keeps its pid until reaped, so the pid cannot have been reused in between.
    /// </summary>
    public static bool Reap(int pid) => pid <= 1 || waitpid(pid, out _, WNoHang) is var r && (r > 0 || (r < 0 && Marshal.GetLastPInvokeError() == EChild));

    private const int EChild = 10;

    /// <summary>Makes orphaned descendants reparent to this process (Linux only).</summary>
    public static bool BecomeSubreaper() => OperatingSystem.IsLinux() && prctl(PrSetChildSubreaper, 1, 0, 0, 0) == 0;

    /// <summary>
    /// SIGKILL to every process but this one that holds any of <paramref name="pipes"/> (as /proc shows them,
    /// <c>pipe:[inode]</c>); answers how many were signalled. A policy's grandchild that left the worker's process
    /// group (setsid) escapes the group kill but keeps the worker's pipes, and while it holds the reply pipe a read
    /// of it never ends. Each candidate is pinned with a pidfd before its descriptors are read, so a pid reused in
    /// between is never the one signalled (plain kill where the kernel has no pidfds). <paramref name="spare"/> (the
    /// worker itself, a <see cref="System.Diagnostics.Process"/> of ours) is never picked: .NET reaps the children it
    /// started, and one reaped behind its back ends this whole process ("Error while reaping child", FailFast).
    /// </summary>
    public static int KillPipeHolders(IReadOnlyCollection<string> pipes, int spare, List<int>? killedPids = null)
    {
        if (pipes.Count == 0) return 0;
        // A child this server forked to start another process holds every descriptor of ours until its exec:
        // it runs our executable, and is no policy's.
        return KillEach(dir => HoldsAny(dir, pipes) && !IsUnexecedForkOfSelf(dir) ? Found.Running : Found.No, spare, killedPids);
    }

    /// <summary>
    /// SIGKILL to every process but this one that runs as <paramref name="uid"/> (as its real, effective, saved or
    /// filesystem uid, as /proc shows them); answers how many were signalled. Only for a uid that is exclusively one
    /// stopped worker's: a policy's grandchild that left the worker's group and closed every pipe of it is found by
    /// nothing else. Each candidate is pinned with a pidfd before its status is read, so a pid reused in between is
    /// never the one signalled. Zombies are not signalled again but added to <paramref name="killedPids"/> too, to be reaped.
    /// <paramref name="spare"/> (the worker itself) is never picked, as for <see cref="KillPipeHolders"/>.
    /// </summary>
    public static int KillUid(int uid, int spare, List<int>? killedPids = null) =>
        uid <= 0 ? 0 : KillEach(dir => StatusOf(dir, uid) switch { null => Found.No, true => Found.Zombie, false => Found.Running }, spare, killedPids);

    private enum Found { No, Running, Zombie }

    // SIGKILL to every process but this one, init and `spare` that `find` picks from its /proc directory, each pinned with a pidfd
    // before `find` looks, so a pid reused in between is never the one signalled (plain kill where the kernel has no
    // pidfds); zombies it picks are only listed, to be reaped. Answers how many were signalled.
    private static int KillEach(Func<string, Found> find, int spare, List<int>? killedPids)
    {
        if (!OperatingSystem.IsLinux()) return 0;
        var self = Environment.ProcessId;
        var killed = 0;
        IEnumerable<string> processes;
        try { processes = Directory.EnumerateDirectories("/proc"); }
        catch (IOException) { return 0; }
        foreach (var dir in processes)
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == self || pid == spare || pid <= 1) continue;
            var pidfd = (int)pidfd_open(PidfdOpen, pid, 0);
            if (pidfd < 0 && Marshal.GetLastPInvokeError() != ENoSys) continue; // gone already
            try
            {
                switch (find(dir))
                {
                    case Found.Zombie:
                        killedPids?.Add(pid);
                        break;
                    case Found.Running when pidfd >= 0 ? pidfd_send_signal(PidfdSendSignal, pidfd, SigKill, 0, 0) == 0 : kill(pid, SigKill) == 0:
                        killed++;
                        killedPids?.Add(pid);
                        break;
                }
            }
            finally
            {
                if (pidfd >= 0) close(pidfd);
            }
        }
        return killed;
    }

    // Null when the process does not run as uid (or is gone); else whether it is a zombie.
    private static bool? StatusOf(string processDir, int uid)
    {
        try
        {
            var zombie = false;
            foreach (var line in File.ReadLines(Path.Combine(processDir, "status")))
            {
                if (line.StartsWith("State:", StringComparison.Ordinal)) zombie = line[6..].TrimStart() is ['Z' or 'X', ..];
                else if (line.StartsWith("Uid:", StringComparison.Ordinal))
                {
                    foreach (var field in line[4..].Split('\t', StringSplitOptions.RemoveEmptyEntries))
                        if (int.TryParse(field, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id) && id == uid) return zombie;
                    return null;
                }
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    private static readonly string? SelfExecutable = ExecutableOf("/proc/self");

    private static string? ExecutableOf(string processDir)
    {
        try { return new FileInfo(Path.Combine(processDir, "exe")).LinkTarget; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    private static bool IsUnexecedForkOfSelf(string processDir) => SelfExecutable is not null && ExecutableOf(processDir) == SelfExecutable;

    private static bool HoldsAny(string processDir, IReadOnlyCollection<string> pipes)
    {
        try
        {
            foreach (var fd in Directory.EnumerateFileSystemEntries(Path.Combine(processDir, "fd")))
                if (new FileInfo(fd).LinkTarget is { } target && pipes.Contains(target)) return true;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return false;
    }

    /// <summary>What /proc calls the pipe behind descriptor <paramref name="fd"/> of this process (<c>pipe:[inode]</c>), or null.</summary>
    public static string? PipeOf(int fd)
    {
        if (!OperatingSystem.IsLinux()) return null;
        try { return new FileInfo($"/proc/self/fd/{fd}").LinkTarget is { } target && target.StartsWith("pipe:", StringComparison.Ordinal) ? target : null; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    // Syscall numbers of the unified table (x86_64 and arm64 alike).
    private const long PidfdSendSignal = 424;
    private const long PidfdOpen = 434;
    private const int ENoSys = 38;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long pidfd_open(long number, int pid, uint flags);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long pidfd_send_signal(long number, int pidfd, int sig, nint info, uint flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int waitpid(int pid, out int status, int options);

    [LibraryImport("libc")]
    private static partial uint geteuid();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int prctl(int option, ulong arg2, ulong arg3, ulong arg4, ulong arg5);
}
