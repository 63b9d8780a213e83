using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;

namespace PolicyGrid.Embedded.Tests.Bundles;

/// <summary>Real archives built in the test: zip, tar.gz and tar.xz (through the xz program).</summary>
internal static class TestArchives
{
    public const string FunctionPy = "class AIOSv1PolicyRule:\n    def __init__(self, rule_id, settings, parameters): pass\n    def eval(self, parameters, input_data, context): return {'ok': True}\n";

    public static byte[] Zip(params (string Name, string Content)[] files) => Zip(files.Select(f => (f.Name, Encoding.UTF8.GetBytes(f.Content), 0)).ToArray());

    /// <summary>Entries with an optional unix mode in the high half of the external attributes (0 = none).</summary>
    public static byte[] Zip((string Name, byte[] Content, int UnixMode)[] files)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, content, mode) in files)
            {
                var entry = zip.CreateEntry(name, CompressionLevel.Optimal);
                if (mode != 0) entry.ExternalAttributes = mode << 16;
                using var s = entry.Open();
                s.Write(content);
            }
        }
        return buffer.ToArray();
    }

    public static byte[] TarGz(params TarEntry[] entries)
    {
        using var buffer = new MemoryStream();
        using (var gzip = new GZipStream(buffer, CompressionLevel.Optimal, leaveOpen: true))
            WriteTar(gzip, entries);
        return buffer.ToArray();
    }

    public static byte[] TarXz(params TarEntry[] entries)
    {
        using var tar = new MemoryStream();
        WriteTar(tar, entries);
        var start = new ProcessStartInfo("xz", ["--compress", "--stdout", "-0"])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        using var xz = Process.Start(start)!;
        var feed = Task.Run(() => { xz.StandardInput.BaseStream.Write(tar.ToArray()); xz.StandardInput.Close(); });
        using var output = new MemoryStream();
        xz.StandardOutput.BaseStream.CopyTo(output);
        feed.Wait();
        xz.WaitForExit();
        return output.ToArray();
    }

    private static void WriteTar(Stream stream, TarEntry[] entries)
    {
        using var writer = new TarWriter(stream, TarEntryFormat.Pax, leaveOpen: true);
        foreach (var e in entries) writer.WriteEntry(e);
    }

    public static TarEntry File(string name, string content, UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite) =>
        new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)), Mode = mode };

    public static TarEntry Dir(string name) => new PaxTarEntry(TarEntryType.Directory, name);

    public static TarEntry Symlink(string name, string target) => new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = target };

    public static TarEntry HardLink(string name, string target) => new PaxTarEntry(TarEntryType.HardLink, name) { LinkName = target };

    public static TarEntry Device(string name) => new PaxTarEntry(TarEntryType.CharacterDevice, name) { DeviceMajor = 1, DeviceMinor = 3 };

    public static TarEntry Fifo(string name) => new PaxTarEntry(TarEntryType.Fifo, name);

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>
    /// A minimal pure-Python wheel (pip installs wheels itself; no build backend or `wheel` package needed),
    /// with a correct RECORD.
    /// </summary>
    public static byte[] Wheel(string name, string version, string initPy)
    {
        var dist = $"{name}-{version}.dist-info";
        var files = new List<(string Name, byte[] Content)>
        {
            ($"{name}/__init__.py", Encoding.UTF8.GetBytes(initPy)),
            ($"{dist}/METADATA", Encoding.UTF8.GetBytes($"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")),
            ($"{dist}/WHEEL", Encoding.UTF8.GetBytes("Wheel-Version: 1.0\nGenerator: policygrid-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")),
        };
        var record = new StringBuilder();
        foreach (var (n, c) in files)
            record.Append($"{n},sha256={Convert.ToBase64String(SHA256.HashData(c)).TrimEnd('=').Replace('+', '-').Replace('/', '_')},{c.Length}\n");
        record.Append($"{dist}/RECORD,,\n");
        files.Add(($"{dist}/RECORD", Encoding.UTF8.GetBytes(record.ToString())));
        return Zip(files.Select(f => (f.Name, f.Content, 0)).ToArray());
    }
}
