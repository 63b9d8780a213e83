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

    /// <summary>Reaps exited children of ours that belong to group <paramref name="pgid"/>; answers how many.</summary>
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

    /// <summary>Makes orphaned descendants reparent to this process (Linux only).</summary>
    public static bool BecomeSubreaper() => OperatingSystem.IsLinux() && prctl(PrSetChildSubreaper, 1, 0, 0, 0) == 0;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int waitpid(int pid, out int status, int options);

    [LibraryImport("libc")]
    private static partial uint geteuid();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int prctl(int option, ulong arg2, ulong arg3, ulong arg4, ulong arg5);
}
