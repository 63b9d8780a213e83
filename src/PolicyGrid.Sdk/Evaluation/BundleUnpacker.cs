using System.Formats.Tar;
using System.IO.Compression;
using PolicyGrid.Sdk.Client;

namespace PolicyGrid.Sdk.Evaluation;

/// <summary>Caps on what one bundle may unpack to.</summary>
public sealed record UnpackLimits(int MaxEntries = 10_000, long MaxTotalBytes = 256L << 20, double MaxRatio = 200)
{
    public static readonly UnpackLimits Default = new();
}

/// <summary>
/// Unpacks a bundle archive (.zip or .tar.gz) into a directory, refusing what could escape the tree or
/// explode: absolute paths, "..", links (zip) or links leading out (tar), device files, and caps on
/// entry count, total size and compression ratio. Sizes are counted as bytes are read, because the
/// sizes an archive declares can lie.
/// </summary>
internal static class BundleUnpacker
{
    public static void Unpack(byte[] data, string target, UnpackLimits limits)
    {
        if (data.Length >= 4 && data[0] == (byte)'P' && data[1] == (byte)'K' && data[2] is 3 or 5)
            UnpackZip(data, target, limits);
        else if (data.Length >= 2 && data[0] == 0x1f && data[1] == 0x8b)
            UnpackTar(new GZipStream(new MemoryStream(data), CompressionMode.Decompress), data.Length, target, limits);
        else if (data.Length >= 6 && data[0] == 0xfd && data[1] == (byte)'7' && data[2] == (byte)'z' && data[3] == (byte)'X' && data[4] == (byte)'Z')
            throw Bad("tar.xz bundles cannot be unpacked by the .NET SDK yet; repack the bundle as .zip or .tar.gz");
        else
            throw Bad("bundle is not a readable archive (expected .zip, .tar.gz or .tar.xz)");
    }

    private static PolicyGridApiException Bad(string message) => new(400, "bad_request", message);

    private static string SafeRelative(string name)
    {
        var clean = name.Replace('\\', '/');
        if (clean.StartsWith('/') || (clean.Length > 1 && clean[1] == ':')) throw Bad($"bundle entry '{name}' has an absolute path");
        var parts = clean.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToArray();
        if (parts.Contains("..")) throw Bad($"bundle entry '{name}' leads outside the bundle ('..')");
        return string.Join('/', parts);
    }

    private static string Destination(string root, string relative)
    {
        var full = Path.GetFullPath(Path.Combine(root, relative));
        if (!full.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw Bad($"bundle entry '{relative}' would be written outside the bundle");
        return full;
    }

    private sealed class Budget(UnpackLimits limits, long archiveSize)
    {
        private readonly long _cap = Math.Min(limits.MaxTotalBytes, (long)(Math.Max(archiveSize, 1) * limits.MaxRatio));
        private long _total;
        private int _entries;

        public void Entry()
        {
            if (++_entries > limits.MaxEntries) throw Bad($"bundle has more than {limits.MaxEntries} entries");
        }

        public void Spend(int n)
        {
            _total += n;
            if (_total > _cap)
                throw Bad($"bundle unpacks to more than {_cap} bytes (limits: {limits.MaxTotalBytes} bytes, ratio {limits.MaxRatio}x the archive)");
        }
    }

    private static void Copy(Stream source, string destination, Budget budget)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
        using var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write);
        var buffer = new byte[81920];
        int n;
        while ((n = source.Read(buffer, 0, buffer.Length)) > 0)
        {
            budget.Spend(n);
            output.Write(buffer, 0, n);
        }
    }

    private static void UnpackZip(byte[] data, string target, UnpackLimits limits)
    {
        var root = Path.GetFullPath(target);
        var budget = new Budget(limits, data.Length);
        try
        {
            using var zip = new ZipArchive(new MemoryStream(data), ZipArchiveMode.Read);
            foreach (var entry in zip.Entries)
            {
                budget.Entry();
                var relative = SafeRelative(entry.FullName);
                if (relative.Length == 0) continue;
                var unixType = (entry.ExternalAttributes >> 16) & 0xF000;
                if (unixType == 0xA000) throw Bad($"bundle entry '{entry.FullName}' is a symbolic link (not allowed in zip bundles)");
                if (unixType is not (0 or 0x8000 or 0x4000)) throw Bad($"bundle entry '{entry.FullName}' is not a regular file or directory");
                var destination = Destination(root, relative);
                if (entry.FullName.EndsWith('/'))
                {
                    Directory.CreateDirectory(destination);
                    continue;
                }
                using var source = entry.Open();
                Copy(source, destination, budget);
            }
        }
        catch (InvalidDataException e)
        {
            throw Bad($"bundle is not a readable zip archive: {e.Message}");
        }
    }

    private static void UnpackTar(Stream compressed, long archiveSize, string target, UnpackLimits limits)
    {
        var root = Path.GetFullPath(target);
        var budget = new Budget(limits, archiveSize);
        var links = new List<(string Relative, string Target)>();
        try
        {
            using (compressed)
            using (var reader = new TarReader(compressed))
            {
                while (reader.GetNextEntry() is { } entry)
                {
                    budget.Entry();
                    var relative = SafeRelative(entry.Name);
                    if (relative.Length == 0) continue;
                    var destination = Destination(root, relative);
                    switch (entry.EntryType)
                    {
                        case TarEntryType.Directory:
                            Directory.CreateDirectory(destination);
                            break;
                        case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                            Copy(entry.DataStream ?? Stream.Null, destination, budget);
                            break;
                        case TarEntryType.SymbolicLink or TarEntryType.HardLink:
                            var link = entry.LinkName.Replace('\\', '/');
                            if (link.StartsWith('/')) throw Bad($"bundle entry '{entry.Name}' is a link to an absolute path ({entry.LinkName})");
                            var resolved = entry.EntryType == TarEntryType.SymbolicLink
                                ? Path.GetFullPath(Path.Combine(Path.GetDirectoryName(destination)!, link))
                                : Path.GetFullPath(Path.Combine(root, SafeRelative(link)));
                            if (!resolved.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                                throw Bad($"bundle entry '{entry.Name}' is a link leading outside the bundle ({entry.LinkName})");
                            links.Add((destination, resolved));
                            break;
                        case TarEntryType.GlobalExtendedAttributes or TarEntryType.ExtendedAttributes:
                            break;
                        default:
                            throw Bad($"bundle entry '{entry.Name}' is a device, fifo or other special file");
                    }
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            throw Bad($"bundle is not a readable tar archive: {e.Message}");
        }
        // In-tree links become copies, made after every regular file exists.
        foreach (var (destination, source) in links)
        {
            if (!File.Exists(source)) throw Bad($"bundle entry '{Path.GetRelativePath(root, destination)}' links to a file that is not in the bundle");
            using var input = File.OpenRead(source);
            Copy(input, destination, budget);
        }
    }
}
