using System.Runtime.InteropServices;

namespace PolicyGrid.Runtime;

/// <summary>
/// Directories the server puts code in that workers then run (the bundle cache) or hands to workers (their temp
/// dirs) must be the server's own: a directory another local user made first under a fixed name in a shared place
/// (<c>/var/tmp</c>, <c>/tmp</c>) would let that user plant or swap what runs. Linux only; elsewhere it only creates.
/// </summary>
public static partial class TrustedDirectory
{
    /// <summary>
    /// Creates <paramref name="path"/> when missing and gives it <paramref name="mode"/>; refuses it, naming
    /// <paramref name="setting"/>, when it is a symbolic link or not this server user's own, or when a directory above
    /// it belongs to a user other than this one or root. A directory above it that others may write to is made sticky
    /// where this user owns it (then nobody else can rename or remove what is in it): an emptyDir volume is such a
    /// directory, while <c>/tmp</c> and <c>/var/tmp</c> are sticky already.
    /// </summary>
    public static string Ensure(string path, UnixFileMode mode, string setting)
    {
        path = Path.GetFullPath(path);
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
            return path;
        }
        try
        {
            return EnsureOwn(path, mode, setting);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A file in its place, a read-only or full file system, a parent this user may not write: this was an
            // unhandled IOException that crashed serve with its stack trace.
            throw new UnusableSettingException($"{path} cannot be used as a directory ({e.Message.Trim().TrimEnd('.')}). Set {setting} to a "
                + "directory this server's user can create and write", e);
        }
    }

    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static string EnsureOwn(string path, UnixFileMode mode, string setting)
    {
        Directory.CreateDirectory(path, mode);
        if (!OperatingSystem.IsLinux()) return path;
        var self = geteuid();
        var own = Stat(path, followLinks: false, setting);
        if (own.IsLink) throw Refused(path, setting, "it is a symbolic link");
        if (own.Uid != self) throw Refused(path, setting, $"it belongs to uid {own.Uid}, not to this server's uid {self}");
        if (own.Mode != mode) File.SetUnixFileMode(path, mode);
        for (var dir = Path.GetDirectoryName(path); dir is not null; dir = Path.GetDirectoryName(dir))
        {
            // A link above it must be trusted as much as what it points to: whoever owns it could point it elsewhere.
            var link = Stat(dir, followLinks: false, setting);
            if (link.IsLink && link.Uid != self && link.Uid != 0) throw Refused(path, setting, $"{dir} above it is a link that belongs to uid {link.Uid}");
            var info = link.IsLink ? Stat(dir, followLinks: true, setting) : link;
            if (info.Uid != self && info.Uid != 0) throw Refused(path, setting, $"{dir} above it belongs to uid {info.Uid}");
            var writableByOthers = (info.Mode & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0;
            if (writableByOthers && (info.Mode & UnixFileMode.StickyBit) == 0 && info.Uid == self)
                File.SetUnixFileMode(dir, info.Mode | UnixFileMode.StickyBit);
        }
        return path;
    }

    private static UnusableSettingException Refused(string path, string setting, string why) =>
        new($"{path} cannot be trusted with policy code: {why}, so another user could swap what is in it. Set {setting} to a directory "
            + "that only this server's user (or root) can change");

    private readonly record struct Info(uint Uid, UnixFileMode Mode, bool IsLink);

    private static Info Stat(string path, bool followLinks, string setting)
    {
        Span<byte> buffer = stackalloc byte[256];
        // statx has the same layout on every architecture: stx_uid at 20, stx_mode at 28.
        if (statx(AtFdCwd, path, followLinks ? 0 : AtSymlinkNoFollow, StatxType | StatxMode | StatxUid, ref MemoryMarshal.GetReference(buffer)) != 0)
            throw new UnusableSettingException($"{path} (for {setting}) cannot be examined: errno {Marshal.GetLastPInvokeError()}");
        var mode = MemoryMarshal.Read<ushort>(buffer[28..]);
        return new Info(MemoryMarshal.Read<uint>(buffer[20..]), (UnixFileMode)(mode & 0xFFF), (mode & 0xF000) == 0xA000);
    }

    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1, StatxMode = 0x2, StatxUid = 0x8;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int dirfd, string path, int flags, uint mask, ref byte buffer);

    [LibraryImport("libc")]
    private static partial uint geteuid();
}
