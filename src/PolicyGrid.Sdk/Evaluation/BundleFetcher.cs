using System.Collections.Concurrent;
using System.Security.Cryptography;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Sdk.Client;

namespace PolicyGrid.Sdk.Evaluation;

/// <summary>
/// Resolves a policy's <c>code</c> to an unpacked directory: downloads it from the registry at most
/// once per content hash, verifies the sha256 its address names and the one the registry recorded
/// (<c>code_sha256</c>), unpacks it safely and caches it.
/// </summary>
internal sealed class BundleFetcher(PolicyGridClient client, string cacheDirectory, UnpackLimits limits)
{
    private static readonly ConcurrentDictionary<string, SemaphoreSlim> Gates = new(StringComparer.Ordinal);

    /// <summary>
    /// The bundle <paramref name="code"/> names. <paramref name="recordedSha256"/> is the document's <c>code_sha256</c>
    /// (null when it has none): the registry recorded the hash of the bytes it loaded, and bytes with any other hash
    /// are refused, so an unpinned URL that now serves other code never runs here under that revision.
    /// </summary>
    public async Task<BundleDirectory> GetAsync(string code, string? recordedSha256, CancellationToken ct)
    {
        var (address, pinned) = Address(code);
        var recorded = string.IsNullOrWhiteSpace(recordedSha256) ? null : recordedSha256.Trim().ToLowerInvariant();
        var gate = Gates.GetOrAdd(cacheDirectory, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(ct);
        try
        {
            if ((recorded ?? pinned) is { } expected && (pinned is null || pinned == expected) && Cached(expected) is { } held) return held;
            var data = await client.DownloadBundleAsync(address, ct);
            var actual = Convert.ToHexStringLower(SHA256.HashData(data));
            foreach (var want in new[] { pinned, recorded })
                if (want is not null && actual != want)
                    throw new PolicyGridApiException(502, "backend_error", $"bundle '{CodePin.Shown(code)}' failed verification: it has sha256 {actual}, not the expected {want}; refusing it");
            return Cached(actual) ?? Unpack(actual, data);
        }
        finally
        {
            gate.Release();
        }
    }

    private static (string Address, string? Sha256) Address(string code)
    {
        var pinned = CodePin.Of(code);
        if (code.StartsWith(BundleRef.Scheme, StringComparison.OrdinalIgnoreCase) && pinned is not null)
            return ($"/bundles/sha256/{pinned}", pinned);
        if (Uri.TryCreate(code, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
            return (code, pinned);
        throw new PolicyGridApiException(400, "bad_request",
            $"policy code '{code}' cannot be fetched by the SDK: expected bundle://sha256/<hex> or an http(s):// URL");
    }

    private BundleDirectory? Cached(string sha)
    {
        var root = Path.Combine(cacheDirectory, sha);
        return File.Exists(Path.Combine(root, "code", "function.py")) ? new BundleDirectory(sha, root, null) : null;
    }

    private BundleDirectory Unpack(string sha, byte[] data)
    {
        var staging = Path.Combine(cacheDirectory, $".{sha[..12]}-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(cacheDirectory);
            Directory.CreateDirectory(staging);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The caller's CacheDirectory is not a directory it may write (a file, a path under one, no permission): its
            // mistake, named as such, as the Python SDK names cache_dir; it was a bare IOException ("The file ... already exists").
            throw new ArgumentException($"CacheDirectory '{cacheDirectory}' cannot hold bundles: {e.Message}; give a directory this process may create and write", e);
        }
        try
        {
            BundleUnpacker.Unpack(data, staging, limits);
            if (!File.Exists(Path.Combine(staging, "code", "function.py")))
                throw new PolicyGridApiException(400, "bad_request", $"bundle sha256:{sha} has no code/function.py");
            MakeReadable(staging);
            var final = Path.Combine(cacheDirectory, sha);
            try
            {
                Directory.Move(staging, final);
            }
            catch (IOException)
            {
                // Another process unpacked the same content first; theirs is identical.
                Directory.Delete(staging, recursive: true);
            }
            return new BundleDirectory(sha, final, null);
        }
        catch
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            throw;
        }
    }

    // Worker processes run as an unprivileged user and must be able to read the bundle.
    private static void MakeReadable(string root)
    {
        if (OperatingSystem.IsWindows()) return;
        const UnixFileMode dir = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead
            | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
        const UnixFileMode file = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        File.SetUnixFileMode(root, dir);
        foreach (var d in Directory.EnumerateDirectories(root, "*", SearchOption.AllDirectories)) File.SetUnixFileMode(d, dir);
        foreach (var f in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)) File.SetUnixFileMode(f, file);
    }

    /// <summary>
    /// A fresh directory for this process (created by us, so nobody else can have planted content in
    /// it), readable by the unprivileged worker user. It is removed when the process exits; directories
    /// left by processes that ended without exiting cleanly are removed by the next process to make one.
    /// </summary>
    public static string ProcessCacheDirectory() => ProcessCache.Value;

    private const string ProcessCachePrefix = "policygrid-sdk-";

    private static readonly Lazy<string> ProcessCache = new(() =>
    {
        SweepAbandonedProcessCaches(Path.GetTempPath());
        var dir = Directory.CreateTempSubdirectory($"{ProcessCachePrefix}{Environment.ProcessId}-").FullName;
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => TryDelete(dir);
        return dir;
    });

    /// <summary>
    /// Removes <c>policygrid-sdk-{pid}-*</c> directories under <paramref name="tempRoot"/> whose process no longer
    /// runs (one per process that used the default cache and was killed). A directory of a running process, of
    /// another user, or without a pid in its name is left alone.
    /// </summary>
    internal static void SweepAbandonedProcessCaches(string tempRoot)
    {
        IEnumerable<string> candidates;
        try { candidates = Directory.EnumerateDirectories(tempRoot, ProcessCachePrefix + "*").ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return; }
        foreach (var dir in candidates)
        {
            var rest = Path.GetFileName(dir)[ProcessCachePrefix.Length..];
            var dash = rest.IndexOf('-');
            if (dash <= 0 || !int.TryParse(rest.AsSpan(0, dash), out var pid) || pid == Environment.ProcessId || ProcessRuns(pid)) continue;
            TryDelete(dir);
        }
    }

    private static bool ProcessRuns(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false; // no such process
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception or UnauthorizedAccessException)
        {
            return true; // cannot tell: keep it
        }
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
