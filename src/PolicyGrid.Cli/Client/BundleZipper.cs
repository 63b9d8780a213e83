using System.IO.Compression;

namespace PolicyGrid.Cli.Client;

/// <summary>
/// Turns a policy directory into a bundle zip. The same files always give the same bytes (sorted
/// entries, fixed timestamps), so pushing an unchanged policy yields the same sha256 address.
/// A directory holding function.py at its top is placed under code/, as the bundle layout wants;
/// a directory holding code/function.py contributes only its code/ folder (manifests and notes
/// beside it are not policy code).
/// </summary>
public static class BundleZipper
{
    private static readonly string[] Skipped = ["__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache"];
    private static readonly DateTimeOffset FixedTime = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public static byte[] Zip(string directory)
    {
        var root = Path.GetFullPath(directory);
        if (!Directory.Exists(root)) throw new ArgumentException($"'{directory}' is not a directory");
        var source = File.Exists(Path.Combine(root, "function.py")) ? root
            : File.Exists(Path.Combine(root, "code", "function.py")) ? Path.Combine(root, "code")
            : throw new ArgumentException($"'{directory}' holds neither function.py nor code/function.py");

        var files = Directory.EnumerateFiles(source, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint })
            .Select(f => Path.GetRelativePath(source, f).Replace('\\', '/'))
            .Where(rel => !rel.Split('/').Any(part => Skipped.Contains(part, StringComparer.Ordinal)) && !rel.EndsWith(".pyc", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();

        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var rel in files)
            {
                var entry = zip.CreateEntry("code/" + rel, CompressionLevel.Optimal);
                entry.LastWriteTime = FixedTime;
                using var target = entry.Open();
                using var file = File.OpenRead(Path.Combine(source, rel));
                file.CopyTo(target);
            }
        }
        return buffer.ToArray();
    }
}
