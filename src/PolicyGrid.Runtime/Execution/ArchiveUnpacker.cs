using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Execution;

/// <summary>Caps on what one bundle may unpack to.</summary>
public sealed record UnpackLimits(int MaxEntries = 10_000, long MaxTotalBytes = 256L << 20, int MaxCompressionRatio = 200);

/// <summary>
/// Unpacks a bundle archive (.zip, .tar.gz, .tar.xz) into a fresh directory, refusing anything
/// that could write outside it or be more than it claims: absolute paths, <c>..</c>, links,
/// device files, too many entries, too many bytes, or a compression ratio past the cap (bytes are
/// counted as they are written, not taken from headers). Errors are 400s naming the entry.
/// </summary>
public static class ArchiveUnpacker
{
    public static void Unpack(byte[] archive, string destination, UnpackLimits limits)
    {
        ArgumentNullException.ThrowIfNull(archive);
        ArgumentNullException.ThrowIfNull(limits);
        var budget = new Budget(limits, archive.Length);
        var root = Path.GetFullPath(destination);
        if (IsZip(archive))
        {
            UnpackZip(archive, root, budget);
        }
        else if (IsGzip(archive))
        {
            using var gzip = new GZipStream(new MemoryStream(archive), CompressionMode.Decompress);
            UnpackTar(gzip, root, budget);
        }
        else if (IsXz(archive))
        {
            using var tar = new MemoryStream(Unxz(archive, limits.MaxTotalBytes + (1 << 20)));
            UnpackTar(tar, root, budget);
        }
        else
        {
            throw Problems.BadRequest("the bundle is not a .zip, .tar.gz or .tar.xz archive");
        }
    }

    private static bool IsZip(byte[] a) => a.Length >= 4 && a[0] == 0x50 && a[1] == 0x4B && (a[2] == 3 || a[2] == 5) && (a[3] == 4 || a[3] == 6);
    private static bool IsGzip(byte[] a) => a.Length >= 2 && a[0] == 0x1F && a[1] == 0x8B;
    private static bool IsXz(byte[] a) => a.Length >= 6 && a[0] == 0xFD && a[1] == 0x37 && a[2] == 0x7A && a[3] == 0x58 && a[4] == 0x5A && a[5] == 0;

    private static void UnpackZip(byte[] archive, string root, Budget budget)
    {
        ZipArchive zip;
        try
        {
            zip = new ZipArchive(new MemoryStream(archive), ZipArchiveMode.Read);
        }
        catch (InvalidDataException e)
        {
            throw Problems.BadRequest($"the bundle is not a readable zip archive: {e.Message}");
        }
        using (zip)
        {
            foreach (var entry in zip.Entries)
            {
                budget.Entry(entry.FullName);
                // Unix mode lives in the high 16 bits of the external attributes; 0xA000 is a symlink.
                var unixType = (entry.ExternalAttributes >> 16) & 0xF000;
                if (unixType == 0xA000) throw Problems.BadRequest($"bundle entry '{entry.FullName}' is a symbolic link; links are not allowed");
                if (unixType is 0x2000 or 0x6000 or 0x1000 or 0xC000)
                    throw Problems.BadRequest($"bundle entry '{entry.FullName}' is a device, pipe or socket; only files and directories are allowed");
                var target = Target(root, entry.FullName);
                if (target is null) continue;
                if (entry.FullName.EndsWith('/')) { Directory.CreateDirectory(target); continue; }
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                try
                {
                    using var source = entry.Open();
                    Copy(source, target, entry.FullName, budget);
                }
                catch (InvalidDataException e)
                {
                    throw Problems.BadRequest($"bundle entry '{entry.FullName}' cannot be read: {e.Message}");
                }
            }
        }
    }

    private static void UnpackTar(Stream stream, string root, Budget budget)
    {
        try
        {
            using var reader = new TarReader(stream);
            while (reader.GetNextEntry() is { } entry)
            {
                if (entry.EntryType is TarEntryType.GlobalExtendedAttributes or TarEntryType.ExtendedAttributes) continue;
                budget.Entry(entry.Name);
                switch (entry.EntryType)
                {
                    case TarEntryType.Directory:
                        if (Target(root, entry.Name) is { } dir) Directory.CreateDirectory(dir);
                        break;
                    case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                        if (Target(root, entry.Name) is not { } file) break;
                        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
                        if (entry.DataStream is { } data) Copy(data, file, entry.Name, budget);
                        else File.WriteAllBytes(file, []);
                        break;
                    case TarEntryType.SymbolicLink or TarEntryType.HardLink:
                        throw Problems.BadRequest($"bundle entry '{entry.Name}' is a link to '{entry.LinkName}'; links are not allowed");
                    default:
                        throw Problems.BadRequest($"bundle entry '{entry.Name}' is a {entry.EntryType}; only files and directories are allowed");
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            throw Problems.BadRequest($"the bundle is not a readable tar archive: {e.Message}");
        }
    }

    /// <summary>Where an entry goes, or null for entries that name the root itself; 400 when it would leave <paramref name="root"/>.</summary>
    private static string? Target(string root, string name)
    {
        var clean = name.Replace('\\', '/');
        if (clean.StartsWith('/') || (clean.Length > 1 && clean[1] == ':'))
            throw Problems.BadRequest($"bundle entry '{name}' has an absolute path");
        var parts = clean.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Any(p => p == ".."))
            throw Problems.BadRequest($"bundle entry '{name}' climbs out of the bundle with '..'");
        parts = parts.Where(p => p != ".").ToArray();
        if (parts.Length == 0) return null;
        var full = Path.GetFullPath(Path.Combine([root, .. parts]));
        if (!full.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw Problems.BadRequest($"bundle entry '{name}' points outside the bundle");
        return full;
    }

    private static void Copy(Stream source, string target, string name, Budget budget)
    {
        using var output = new FileStream(target, FileMode.CreateNew, FileAccess.Write);
        var buffer = new byte[81920];
        int read;
        while ((read = source.Read(buffer)) > 0)
        {
            budget.Bytes(read, name);
            output.Write(buffer, 0, read);
        }
    }

    // xz is not in the .NET base library; the xz tool does the decompression, under the same byte cap.
    private static byte[] Unxz(byte[] archive, long maxBytes)
    {
        var start = new ProcessStartInfo("xz") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "--decompress", "--stdout", "--no-warn" }) start.ArgumentList.Add(arg);
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("xz did not start");
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw Problems.BadRequest("the bundle is a .tar.xz archive, but this server has no xz tool to unpack it; upload a .zip or .tar.gz");
        }
        using (process)
        {
            var feed = Task.Run(() =>
            {
                try { process.StandardInput.BaseStream.Write(archive); process.StandardInput.Close(); }
                catch (IOException) { }
            });
            using var output = new MemoryStream();
            var buffer = new byte[81920];
            int read;
            while ((read = process.StandardOutput.BaseStream.Read(buffer)) > 0)
            {
                output.Write(buffer, 0, read);
                if (output.Length > maxBytes)
                {
                    try { process.Kill(); } catch (InvalidOperationException) { }
                    throw Problems.BadRequest($"the bundle unpacks to more than {maxBytes} bytes");
                }
            }
            process.WaitForExit();
            feed.Wait();
            if (process.ExitCode != 0)
                throw Problems.BadRequest($"the bundle is not a readable .tar.xz archive: {process.StandardError.ReadToEnd().Trim()}");
            return output.ToArray();
        }
    }

    private sealed class Budget(UnpackLimits limits, long archiveBytes)
    {
        private int entries;
        private long total;

        public void Entry(string name)
        {
            if (++entries > limits.MaxEntries)
                throw Problems.BadRequest($"the bundle has more than {limits.MaxEntries} entries (at '{name}')");
        }

        public void Bytes(int count, string name)
        {
            total += count;
            if (total > limits.MaxTotalBytes)
                throw Problems.BadRequest($"the bundle unpacks to more than {limits.MaxTotalBytes} bytes (at '{name}')");
            if (total > (long)limits.MaxCompressionRatio * Math.Max(archiveBytes, 1) && total > 1 << 20)
                throw Problems.BadRequest($"the bundle expands more than {limits.MaxCompressionRatio}x its size (at '{name}'): refused as a decompression bomb");
        }
    }
}
