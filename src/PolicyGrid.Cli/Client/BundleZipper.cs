using System.IO.Compression;

namespace PolicyGrid.Cli.Client;

/// <summary>
/// Turns a policy directory into a bundle zip. The same files always give the same bytes (sorted
/// entries, fixed timestamps), so pushing an unchanged policy yields the same sha256 address.
/// A directory holding function.py at its top is placed under code/, as the bundle layout wants.
/// </summary>
public static class BundleZipper
{
    private static readonly string[] Skipped = ["__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache"];
    private static readonly DateTimeOffset FixedTime = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public static byte[] Zip(string directory)
    {
        var root = Path.GetFullPath(directory);
        if (!Directory.Exists(root)) throw new ArgumentException($"'{directory}' is not a directory");
        var prefix = File.Exists(Path.Combine(root, "function.py")) ? "code/" : "";
        if (prefix.Length == 0 && !File.Exists(Path.Combine(root, "code", "function.py")))
            throw new ArgumentException($"'{directory}' holds neither function.py nor code/function.py");

        var files = Directory.EnumerateFiles(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint })
            .Select(f => Path.GetRelativePath(root, f).Replace('\\', '/'))
            .Where(rel => !rel.Split('/').Any(part => Skipped.Contains(part, StringComparer.Ordinal)) && !rel.EndsWith(".pyc", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();

        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var rel in files)
            {
                var entry = zip.CreateEntry(prefix + rel, CompressionLevel.Optimal);
                entry.LastWriteTime = FixedTime;
                using var target = entry.Open();
                using var source = File.OpenRead(Path.Combine(root, rel));
                source.CopyTo(target);
            }
        }
        return buffer.ToArray();
    }
}
