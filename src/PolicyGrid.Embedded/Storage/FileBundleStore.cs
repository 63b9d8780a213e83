using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// <see cref="IBundleStore"/> as content-addressed files: <c>&lt;root&gt;/sha256/ab/&lt;hex&gt;</c>. A bundle is
/// written to a temp file, fsynced, renamed into place and its directory fsynced, so a reader sees
/// either nothing or the whole archive, and a stored bundle survives a crash.
/// </summary>
public sealed partial class FileBundleStore : IBundleStore
{
    public FileBundleStore(string root, ILogger<FileBundleStore>? log = null)
    {
        Root = Path.GetFullPath(root);
        Directory.CreateDirectory(Path.Combine(Root, "sha256"));
        SweepAbandonedTemps(log ?? (ILogger)NullLogger.Instance);
    }

    /// <summary>
    /// The temp files of uploads cut short by a crash (kill -9, power cut): never renamed into place, so no bundle, but
    /// up to a whole archive each (64 MiB by default) that stayed on disk for good. An hour is far beyond any write, so
    /// an upload still in progress in another process is left alone.
    /// </summary>
    private void SweepAbandonedTemps(ILogger log)
    {
        var removed = 0;
        long bytes = 0;
        foreach (var temp in Directory.EnumerateFiles(Path.Combine(Root, "sha256"), ".*.tmp", SearchOption.AllDirectories))
        {
            try
            {
                var file = new FileInfo(temp);
                if (file.LastWriteTimeUtc >= DateTime.UtcNow.AddHours(-1)) continue;
                var length = file.Length;
                file.Delete();
                removed++;
                bytes += length;
            }
            catch (IOException) { /* another process may be removing it too */ }
            catch (UnauthorizedAccessException) { }
        }
        if (removed > 0)
            log.LogInformation("Removed {Count} partial bundle uploads ({Bytes} bytes) left in {Root} by a server that stopped mid-upload; no stored bundle was affected",
                removed, bytes, Root);
    }

    public string Root { get; }

    public async Task<BundleRef> PutAsync(ReadOnlyMemory<byte> archive, CancellationToken ct = default)
    {
        var hex = Convert.ToHexStringLower(SHA256.HashData(archive.Span));
        var target = PathFor(hex);
        var directory = Path.GetDirectoryName(target)!;
        if (File.Exists(target))
        {
            // Stored already, maybe by an upload of the same bytes still between its rename and its directory sync: synced
            // here too before this one answers, or a power cut could lose the file a policy created after this answer names.
            SyncDirectory(directory);
            return new BundleRef(hex, archive.Length);
        }
        Directory.CreateDirectory(directory);
        var temp = Path.Combine(directory, $".{hex}.{Guid.NewGuid():N}.tmp");
        try
        {
            await using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 81920, FileOptions.Asynchronous))
            {
                await stream.WriteAsync(archive, ct);
                stream.Flush(flushToDisk: true);
            }
            try { File.Move(temp, target, overwrite: false); }
            catch (IOException) when (File.Exists(target)) { /* a concurrent writer stored the same bytes first */ }
            SyncDirectory(directory);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
        return new BundleRef(hex, archive.Length);
    }

    public async Task<byte[]?> GetAsync(string sha256, CancellationToken ct = default)
    {
        var path = PathFor(CheckHash(sha256));
        try { return await File.ReadAllBytesAsync(path, ct); }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
    }

    private string PathFor(string hex) => Path.Combine(Root, "sha256", hex[..2], hex);

    private static string CheckHash(string sha256)
    {
        if (sha256 is null || sha256.Length != 64 || !sha256.All(c => c is (>= '0' and <= '9') or (>= 'a' and <= 'f')))
            throw Problems.BadRequest($"'{sha256}' is not a sha256: expected 64 lowercase hex digits");
        return sha256;
    }

    /// <summary>Makes the rename itself durable (POSIX needs an fsync of the directory; .NET has no API for it).</summary>
    internal static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        var fd = Open(directory, 0 /* O_RDONLY */);
        if (fd < 0) return;
        try { _ = Fsync(fd); }
        finally { _ = Close(fd); }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
