using System.Buffers.Binary;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Bundles;

public enum BundleArchiveKind { Unknown, Zip, TarGz, TarXz }

/// <summary>What an archive holds once checked (or unpacked): entries and bytes of file content.</summary>
public sealed record ArchiveSummary(BundleArchiveKind Kind, int Entries, long Bytes);

/// <summary>
/// Reads bundle archives (.zip, .tar.gz, .tar.xz) safely. Every entry is checked before anything is
/// written: no absolute paths, no <c>..</c>, no device files or FIFOs, links only to places inside the
/// bundle, no path a file system could not hold (a segment over <see cref="MaxSegmentBytes"/> or a path over
/// <see cref="MaxPathBytes"/> bytes of UTF-8), no entry twice, no encrypted zip entries, and caps on entry count,
/// unpacked size and compression ratio, counted on the bytes actually
/// decompressed rather than on what the archive claims. .NET has no xz decoder, so .tar.xz goes through the
/// <c>xz</c> program (a child process with a memory limit and a deadline).
/// </summary>
public static class BundleArchive
{
    private const string NotReadable = "the bundle is not a readable archive";

    /// <summary>Longest file or directory name in bytes of UTF-8 (NAME_MAX on Linux and most file systems).</summary>
    public const int MaxSegmentBytes = 255;

    /// <summary>Longest entry path in bytes of UTF-8, well inside PATH_MAX once under the cache directory.</summary>
    public const int MaxPathBytes = 1024;

    public static BundleArchiveKind Detect(ReadOnlySpan<byte> b) =>
        b.StartsWith("PK\x03\x04"u8) || b.StartsWith("PK\x05\x06"u8) ? BundleArchiveKind.Zip
        : b.StartsWith((ReadOnlySpan<byte>)[0x1F, 0x8B]) ? BundleArchiveKind.TarGz
        : b.StartsWith((ReadOnlySpan<byte>)[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) ? BundleArchiveKind.TarXz
        : BundleArchiveKind.Unknown;

    /// <summary>Reads the whole archive without writing anything; 400 when it is unreadable or unsafe.</summary>
    public static ArchiveSummary Validate(ReadOnlySpan<byte> archive) => Validate(archive, new ArchiveLimits());

    public static ArchiveSummary Validate(ReadOnlySpan<byte> archive, ArchiveLimits limits) => Walk(archive.ToArray(), limits, root: null);

    /// <summary>Unpacks into <paramref name="destination"/> (created; should be empty); 400 when unreadable or unsafe.</summary>
    public static ArchiveSummary Unpack(ReadOnlySpan<byte> archive, string destination, ArchiveLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        var root = Path.GetFullPath(destination);
        CreateDirectory(root);
        return Walk(archive.ToArray(), limits, root);
    }

    private static ArchiveSummary Walk(byte[] archive, ArchiveLimits limits, string? root)
    {
        var kind = Detect(archive);
        var writer = new EntryWriter(root, new UnpackBudget(limits, archive.Length));
        try
        {
            switch (kind)
            {
                case BundleArchiveKind.Zip:
                    WalkZip(archive, writer);
                    break;
                case BundleArchiveKind.TarGz:
                    using (var gzip = new GZipStream(new MemoryStream(archive), CompressionMode.Decompress))
                        WalkTar(new CappedStream(gzip, writer.Budget.MaxStreamBytes), writer);
                    break;
                case BundleArchiveKind.TarXz:
                    using (var xz = XzProcess.Start(archive, limits))
                    {
                        WalkTar(new CappedStream(xz.Output, writer.Budget.MaxStreamBytes), writer);
                        xz.Finish();
                    }
                    break;
                default:
                    throw Problems.BadRequest($"{NotReadable}: expected a .zip, .tar.gz or .tar.xz (it starts with neither PK, 1F 8B nor FD 37 7A 58 5A)");
            }
            writer.CreateLinks();
        }
        catch (IOException e) when (DiskFailures.Of(e) is { } full)
        {
            // The cache's disk refused a write: the server's problem, not the archive's.
            throw full;
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException or NotSupportedException or ArgumentException
                                      || (e is IOException && e is not (DirectoryNotFoundException or PathTooLongException) && e.GetType() == typeof(IOException)))
        {
            throw Problems.BadRequest($"{NotReadable} ({Describe(kind)}): {e.Message}");
        }
        return new ArchiveSummary(kind, writer.Budget.Entries, writer.Budget.Bytes);
    }

    private static string Describe(BundleArchiveKind kind) => kind switch
    {
        BundleArchiveKind.Zip => "zip",
        BundleArchiveKind.TarGz => "tar.gz",
        BundleArchiveKind.TarXz => "tar.xz",
        _ => "unknown format",
    };

    private static void WalkZip(byte[] archive, EntryWriter writer)
    {
        writer.Budget.ExpectEntries(ZipDirectoryEntries(archive));
        using var zip = new ZipArchive(new MemoryStream(archive), ZipArchiveMode.Read);
        foreach (var entry in zip.Entries)
        {
            // Unreadable without a password, and the reader would fail (or read garbage) deep inside.
            if (entry.IsEncrypted)
                throw Problems.BadRequest($"bundle entry '{Shown(entry.FullName)}' is encrypted; encrypted entries are not supported");
            var unixMode = (entry.ExternalAttributes >> 16) & 0xFFFF;
            var fileType = unixMode & 0xF000;
            if (entry.FullName.EndsWith('/') || fileType == 0x4000)
            {
                writer.Directory(entry.FullName);
                continue;
            }
            if (fileType == 0xA000)
            {
                writer.SymbolicLink(entry.FullName, ReadLinkTarget(entry));
                continue;
            }
            if (fileType is not (0 or 0x8000))
                throw Problems.BadRequest($"bundle entry '{Shown(entry.FullName)}' is a device file, FIFO or socket; only files, directories and links inside the bundle are allowed");
            writer.Budget.Declare(entry.FullName, entry.Length);
            using var data = entry.Open();
            writer.File(entry.FullName, data, executable: (unixMode & 0x40) != 0);
        }
    }

    /// <summary>
    /// How many headers the zip's central directory holds, counted without reading them into objects; null when
    /// the directory cannot be found (the zip reader then says what is wrong). The reader builds an object per
    /// entry before the first can be checked: a 64 MiB upload of 700,000 empty entries took ~600 MB of memory
    /// before <see cref="ArchiveLimits.MaxEntries"/> was seen.
    /// </summary>
    public static long? ZipDirectoryEntries(ReadOnlySpan<byte> zip)
    {
        // The end-of-central-directory record: 22 bytes plus a comment of up to 65535, at the very end.
        var tail = Math.Max(0, zip.Length - 22 - 0xFFFF);
        var eocd = zip[tail..].LastIndexOf("PK\x05\x06"u8);
        if (eocd < 0) return null;
        eocd += tail;
        if (eocd + 22 > zip.Length) return null;
        long offset = BinaryPrimitives.ReadUInt32LittleEndian(zip[(eocd + 16)..]);
        long size = BinaryPrimitives.ReadUInt32LittleEndian(zip[(eocd + 12)..]);
        // Zip64: the locator just before points to the zip64 record, which holds the real offset and size.
        if ((offset == 0xFFFFFFFF || size == 0xFFFFFFFF) && eocd >= 20 && zip[(eocd - 20)..].StartsWith("PK\x06\x07"u8))
        {
            var record = BinaryPrimitives.ReadInt64LittleEndian(zip[(eocd - 12)..]);
            if (record < 0 || record + 56 > zip.Length || !zip[(int)record..].StartsWith("PK\x06\x06"u8)) return null;
            size = BinaryPrimitives.ReadInt64LittleEndian(zip[((int)record + 40)..]);
            offset = BinaryPrimitives.ReadInt64LittleEndian(zip[((int)record + 48)..]);
        }
        if (offset < 0 || size < 0 || offset + size > zip.Length) return null;
        long count = 0;
        for (var at = offset; at + 46 <= offset + size && zip[(int)at..].StartsWith("PK\x01\x02"u8); count++)
            at += 46 + BinaryPrimitives.ReadUInt16LittleEndian(zip[((int)at + 28)..]) + BinaryPrimitives.ReadUInt16LittleEndian(zip[((int)at + 30)..])
                  + BinaryPrimitives.ReadUInt16LittleEndian(zip[((int)at + 32)..]);
        return count;
    }

    /// <summary>
    /// A zip link's target is the entry's data: read no further than one byte past what a target may be, so a link
    /// entry that decompresses to gigabytes is refused (by <see cref="EntryWriter.SymbolicLink"/>'s length check) after
    /// a kilobyte instead of being read whole into memory.
    /// </summary>
    private static string ReadLinkTarget(ZipArchiveEntry entry)
    {
        using var data = entry.Open();
        var buffer = new byte[MaxPathBytes + 1];
        var length = 0;
        int read;
        while (length < buffer.Length && (read = data.Read(buffer, length, buffer.Length - length)) > 0) length += read;
        // Decoding keeps the length past the limit: a byte that is no UTF-8 becomes U+FFFD, three bytes.
        return Encoding.UTF8.GetString(buffer, 0, length);
    }

    private static void WalkTar(Stream tarStream, EntryWriter writer)
    {
        using var tar = new TarReader(tarStream, leaveOpen: true);
        while (tar.GetNextEntry(copyData: false) is { } entry)
        {
            switch (entry.EntryType)
            {
                case TarEntryType.Directory:
                    writer.Directory(entry.Name);
                    break;
                case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                    writer.Budget.Declare(entry.Name, entry.Length);
                    writer.File(entry.Name, entry.DataStream ?? Stream.Null, executable: (entry.Mode & UnixFileMode.UserExecute) != 0);
                    break;
                case TarEntryType.SymbolicLink:
                    writer.SymbolicLink(entry.Name, entry.LinkName);
                    break;
                case TarEntryType.HardLink:
                    writer.HardLink(entry.Name, entry.LinkName);
                    break;
                case TarEntryType.GlobalExtendedAttributes or TarEntryType.ExtendedAttributes:
                    break; // metadata only
                default:
                    throw Problems.BadRequest($"bundle entry '{Shown(entry.Name)}' is a {entry.EntryType} entry; only files, directories and links inside the bundle are allowed");
            }
        }
    }

    internal static void CreateDirectory(string path)
    {
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(path);
        else Directory.CreateDirectory(path, DirectoryMode);
    }

    internal const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
        | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

    internal const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    internal const UnixFileMode ExecutableMode = FileMode | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    /// <summary>Counts entries and decompressed bytes against the limits as they are read.</summary>
    internal sealed class UnpackBudget(ArchiveLimits limits, long archiveBytes)
    {
        public int Entries { get; private set; }
        public long Bytes { get; private set; }

        /// <summary>Most file bytes allowed: the size cap, or the ratio cap for this archive, whichever is lower.</summary>
        public long MaxBytes { get; } = (long)Math.Min(limits.MaxTotalBytes, Math.Max(1.0, archiveBytes) * limits.MaxCompressionRatio);

        /// <summary>Most bytes of decompressed tar stream (file bytes plus headers and padding).</summary>
        public long MaxStreamBytes => MaxBytes + (long)(limits.MaxEntries + 2) * 2048 + 1024 * 1024;

        /// <summary>Refuses an archive that states more entries than the cap before any is read (null: not known).</summary>
        public void ExpectEntries(long? count)
        {
            if (count > limits.MaxEntries)
                throw Problems.BadRequest($"the bundle has more than {limits.MaxEntries} entries ({count} in its zip directory; limit PolicyGrid:Runtime:Bundles:Limits:MaxEntries)");
        }

        public void Entry(string name)
        {
            if (++Entries > limits.MaxEntries)
                throw Problems.BadRequest($"the bundle has more than {limits.MaxEntries} entries (limit PolicyGrid:Runtime:Bundles:Limits:MaxEntries)");
        }

        public void Declare(string name, long length)
        {
            if (length > MaxBytes) throw TooBig(name);
        }

        public void Add(string name, long bytes)
        {
            Bytes += bytes;
            if (Bytes > MaxBytes) throw TooBig(name);
        }

        private PolicyGridException TooBig(string name) => Bytes > limits.MaxTotalBytes || MaxBytes == limits.MaxTotalBytes
            ? Problems.BadRequest($"the bundle unpacks to more than {limits.MaxTotalBytes} bytes (at '{Shown(name)}'; limit PolicyGrid:Runtime:Bundles:Limits:MaxTotalBytes)")
            : Problems.BadRequest($"the bundle unpacks to more than {limits.MaxCompressionRatio}x its archive size (at '{Shown(name)}'), which looks like a decompression bomb (limit PolicyGrid:Runtime:Bundles:Limits:MaxCompressionRatio)");
    }

    /// <summary>
    /// Writes (or, without a root, only checks) entries. Links are created after every file, and link
    /// targets may not contain <c>..</c> or be absolute, so nothing is ever written through a link and no
    /// link can point outside the bundle however links are chained.
    /// </summary>
    private sealed class EntryWriter(string? root, UnpackBudget budget)
    {
        private readonly List<(string Path, string Target, bool Hard, string Name)> _links = [];
        // Files by relative path, with their size: a hard link is written as a copy, so it costs that size again.
        private readonly Dictionary<string, long> _files = new(StringComparer.Ordinal);
        // Paths of files and links, by relative path, with the entry name that took each.
        private readonly Dictionary<string, string> _taken = new(StringComparer.Ordinal);
        // Paths that are directories: named by a directory entry, or a parent of some entry.
        private readonly Dictionary<string, string> _directories = new(StringComparer.Ordinal);

        public UnpackBudget Budget { get; } = budget;

        public void Directory(string name)
        {
            Budget.Entry(name);
            var relative = SafeRelative(name);
            if (relative.Length == 0) return;
            TakeDirectory(name, relative);
            if (root is null) return;
            CreateDirectory(Path.Combine(root, relative));
        }

        public void File(string name, Stream data, bool executable)
        {
            Budget.Entry(name);
            var relative = SafeRelative(name);
            if (relative.Length == 0) throw Problems.BadRequest($"bundle entry '{Shown(name)}' has no file name");
            Take(name, relative);
            Stream sink = Stream.Null;
            if (root is not null)
            {
                var path = Path.Combine(root, relative);
                CreateDirectory(Path.GetDirectoryName(path)!);
                var options = new FileStreamOptions { Mode = System.IO.FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
                if (!OperatingSystem.IsWindows()) options.UnixCreateMode = executable ? ExecutableMode : FileMode;
                sink = new FileStream(path, options);
            }
            long size = 0;
            using (sink)
            {
                var buffer = new byte[81920];
                int read;
                while ((read = data.Read(buffer)) > 0)
                {
                    Budget.Add(name, read);
                    sink.Write(buffer, 0, read);
                    size += read;
                }
            }
            _files[relative] = size;
        }

        public void SymbolicLink(string name, string target) => Link(name, target, hard: false);

        public void HardLink(string name, string target) => Link(name, target, hard: true);

        private void Link(string name, string target, bool hard)
        {
            Budget.Entry(name);
            var relative = SafeRelative(name);
            if (relative.Length == 0) throw Problems.BadRequest($"bundle entry '{Shown(name)}' has no file name");
            Take(name, relative);
            if (Encoding.UTF8.GetByteCount(target) > MaxPathBytes)
                throw Problems.BadRequest($"bundle entry '{Shown(name)}' is a link whose target is longer than {MaxPathBytes} bytes");
            if (string.IsNullOrEmpty(target) || target.StartsWith('/') || target.Contains('\\', StringComparison.Ordinal) || target.Contains('\0', StringComparison.Ordinal)
                || target.Split('/').Any(s => s == ".."))
                throw Problems.BadRequest($"bundle entry '{Shown(name)}' is a link to '{target}', which leaves the bundle; links may only point further down inside it");
            _links.Add((relative, hard ? SafeRelative(target) : target, hard, name));
        }

        public void CreateLinks()
        {
            foreach (var (relative, target, hard, name) in _links)
            {
                long size = 0;
                if (hard && !_files.TryGetValue(target, out size))
                    throw Problems.BadRequest($"bundle entry '{Shown(name)}' is a hard link to '{target}', which is not a file of the bundle");
                // Written as a copy, so it counts like the file again: else one big file and thousands of links to it
                // unpack to thousands of times the size cap.
                if (hard) Budget.Add(name, size);
                if (root is null) continue;
                var path = Path.Combine(root, relative);
                CreateDirectory(Path.GetDirectoryName(path)!);
                if (hard) System.IO.File.Copy(Path.Combine(root, target), path, overwrite: true);
                else System.IO.File.CreateSymbolicLink(path, target);
            }
        }

        /// <summary>
        /// A second file or link at the same path would silently replace the first, so what runs would depend
        /// on entry order: refused instead.
        /// </summary>
        private void Take(string name, string relative)
        {
            if (!_taken.TryAdd(relative, name))
                throw Problems.BadRequest($"bundle entry '{Shown(name)}' appears more than once in the archive; each file may appear only once");
            if (_directories.TryGetValue(relative, out var directory))
                throw Conflict(name, directory);
            TakeParents(name, relative);
        }

        /// <summary>
        /// A path is a file (or link) or a directory, never both: else which one the unpack keeps depends on entry
        /// order, or it fails midway on the file system, and a file under a link's path would be written through it.
        /// </summary>
        private void TakeDirectory(string name, string relative)
        {
            if (_taken.TryGetValue(relative, out var leaf)) throw Conflict(leaf, name);
            _directories.TryAdd(relative, name);
            TakeParents(name, relative);
        }

        private void TakeParents(string name, string relative)
        {
            for (var slash = relative.LastIndexOf('/'); slash > 0; slash = relative.LastIndexOf('/', slash - 1))
            {
                var parent = relative[..slash];
                if (_taken.TryGetValue(parent, out var leaf)) throw Conflict(leaf, name);
                if (!_directories.TryAdd(parent, name)) break; // its parents were taken with it
            }
        }

        private static PolicyGridException Conflict(string leaf, string under) => Problems.BadRequest(
            $"bundle entry '{Shown(leaf)}' is a file or link, but entry '{Shown(under)}' needs it to be a directory; a path may be only one of them");

        /// <summary>The entry's path relative to the bundle root, or a 400 when it could land anywhere else or cannot be written.</summary>
        private static string SafeRelative(string name)
        {
            if (name.Contains('\0', StringComparison.Ordinal) || name.Contains('\\', StringComparison.Ordinal))
                throw Problems.BadRequest($"bundle entry '{Shown(name).Replace("\0", "\\0", StringComparison.Ordinal)}' has a NUL or backslash in its path");
            if (name.StartsWith('/') || (name.Length >= 2 && name[1] == ':'))
                throw Problems.BadRequest($"bundle entry '{Shown(name)}' has an absolute path; entries must be relative to the bundle root");
            var segments = name.Split('/').Where(s => s.Length > 0 && s != ".").ToList();
            if (segments.Any(s => s == ".."))
                throw Problems.BadRequest($"bundle entry '{Shown(name)}' contains '..'; entries must stay inside the bundle");
            // Checked here, before anything is written, rather than left to the file system's PathTooLongException.
            if (segments.FirstOrDefault(s => Encoding.UTF8.GetByteCount(s) > MaxSegmentBytes) is { } longSegment)
                throw Problems.BadRequest($"bundle entry '{Shown(name)}' has a name of {Encoding.UTF8.GetByteCount(longSegment)} bytes ('{Shown(longSegment)}'); each file or directory name may be at most {MaxSegmentBytes} bytes of UTF-8");
            var relative = string.Join('/', segments);
            var bytes = Encoding.UTF8.GetByteCount(relative);
            if (bytes > MaxPathBytes)
                throw Problems.BadRequest($"bundle entry '{Shown(name)}' has a path of {bytes} bytes; entry paths may be at most {MaxPathBytes} bytes of UTF-8");
            return relative;
        }
    }

    /// <summary>An entry name as shown in a message: long names are cut so the message stays readable.</summary>
    private static string Shown(string name) => name.Length <= 80 ? name : $"{name[..60]}…({name.Length} characters)";

    /// <summary>A read-only view that fails once more than a set number of bytes has come out of it.</summary>
    private sealed class CappedStream(Stream inner, long max) : Stream
    {
        private long _read;
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = inner.Read(buffer);
            _read += n;
            if (_read > max)
                throw Problems.BadRequest($"the bundle decompresses to more than {max} bytes, which looks like a decompression bomb (limits PolicyGrid:Runtime:Bundles:Limits)");
            return n;
        }
    }

    /// <summary>The <c>xz</c> program decompressing an archive from stdin to stdout.</summary>
    private sealed class XzProcess : IDisposable
    {
        private readonly Process _process;
        private readonly Task _feed;
        private readonly Task<string> _errors;
        private readonly CancellationTokenSource _deadline;

        private XzProcess(Process process, byte[] archive, TimeSpan timeout)
        {
            _process = process;
            _deadline = new CancellationTokenSource(timeout);
            _deadline.Token.Register(() => { try { _process.Kill(); } catch (InvalidOperationException) { } });
            _feed = Task.Run(async () =>
            {
                try { await _process.StandardInput.BaseStream.WriteAsync(archive); }
                catch (IOException) { /* xz stopped reading: its exit code says why */ }
                finally { try { _process.StandardInput.Close(); } catch (IOException) { } }
            });
            _errors = _process.StandardError.ReadToEndAsync();
        }

        public Stream Output => _process.StandardOutput.BaseStream;

        public static XzProcess Start(byte[] archive, ArchiveLimits limits)
        {
            var start = new ProcessStartInfo("xz")
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in new[] { "--decompress", "--stdout", "--single-stream", "--memlimit-decompress=256MiB", "--threads=1" }) start.ArgumentList.Add(a);
            try { return new XzProcess(Process.Start(start)!, archive, limits.XzTimeout); }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw Problems.BadRequest($"this server cannot read .tar.xz bundles: the xz program is not installed ({e.Message}); upload a .zip or .tar.gz instead");
            }
        }

        /// <summary>After the tar was read: xz must have exited cleanly, or the archive was damaged.</summary>
        public void Finish()
        {
            Output.CopyTo(Stream.Null);
            _process.WaitForExit();
            _feed.GetAwaiter().GetResult();
            if (_deadline.IsCancellationRequested) throw Problems.BadRequest("the .tar.xz bundle took too long to decompress");
            if (_process.ExitCode != 0)
                throw Problems.BadRequest($"{NotReadable} (tar.xz): xz says: {_errors.GetAwaiter().GetResult().Trim()}");
        }

        public void Dispose()
        {
            try { if (!_process.HasExited) _process.Kill(); } catch (InvalidOperationException) { }
            _process.Dispose();
            _deadline.Dispose();
        }
    }
}
