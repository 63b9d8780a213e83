using System.Diagnostics;
using Xunit;

namespace PolicyGrid.TestSupport;

/// <summary>
/// A tmpfs of a few MiB mounted for one test (root on Linux; the test is skipped, saying why, elsewhere), and a file
/// that takes all its space: a disk that fills up under the code being tested.
/// </summary>
internal sealed class SmallDisk : IDisposable
{
    private SmallDisk(string path) => Path = path;

    public string Path { get; }
    private string Filler => System.IO.Path.Combine(Path, "filler");

    /// <summary>
    /// Mounts a tmpfs of <paramref name="bytes"/> on a new directory inside <paramref name="under"/> (the temp directory by
    /// default), with <paramref name="options"/> (such as "noexec") added to its mount options.
    /// </summary>
    public static SmallDisk Mount(int bytes, string? under = null, string? options = null)
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root") Assert.Skip("needs root on Linux to mount a small tmpfs");
        var path = System.IO.Path.Combine(under ?? System.IO.Path.GetTempPath(), "pg-small-disk-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(path);
        if (Run("mount", "-t", "tmpfs", "-o", $"size={bytes},mode=0755{(options is null ? "" : "," + options)}", "tmpfs", path) is { } refused)
        {
            Directory.Delete(path);
            Assert.Skip($"cannot mount a tmpfs here: {refused}");
        }
        return new SmallDisk(path);
    }

    /// <summary>Writes until the disk refuses: no space is left for anything else.</summary>
    public void Fill()
    {
        var block = new byte[64 * 1024];
        using var filler = new FileStream(Filler, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);
        for (var size = block.Length; size > 0; size /= 2)
        {
            try
            {
                while (true) filler.Write(block, 0, size);
            }
            catch (IOException)
            {
                // ENOSPC at this size: the rest goes in smaller writes, down to a byte.
            }
        }
    }

    public void Free() => File.Delete(Filler);

    public void Dispose()
    {
        if (Run("umount", "-l", Path) is null) Directory.Delete(Path, recursive: true);
    }

    /// <summary>Runs a mount tool; null when it succeeded, else what it said (for a test to skip with).</summary>
    internal static string? Run(string command, params string[] args)
    {
        var start = new ProcessStartInfo(command) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return process.ExitCode == 0 ? null : $"{command} exited with {process.ExitCode}: {error.Trim()}";
    }
}
