using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Sdk.Client;

namespace PolicyGrid.Sdk.Evaluation;

/// <summary>
/// Resolves a policy's <c>code</c> to an unpacked directory: downloads it from the registry at most
/// once per content hash, verifies the sha256 its address names, unpacks it safely and caches it.
/// </summary>
internal sealed partial class BundleFetcher(PolicyGridClient client, string cacheDirectory, UnpackLimits limits)
{
    private static readonly ConcurrentDictionary<string, SemaphoreSlim> Gates = new(StringComparer.Ordinal);

    [GeneratedRegex("^bundle://sha256/([0-9a-fA-F]{64})$")]
    private static partial Regex BundleUri();

    [GeneratedRegex("/bundles/sha256/([0-9a-fA-F]{64})/?$")]
    private static partial Regex ShaInPath();

    public async Task<BundleDirectory> GetAsync(string code, CancellationToken ct)
    {
        var (address, expected) = Address(code);
        var gate = Gates.GetOrAdd(cacheDirectory, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(ct);
        try
        {
            if (expected is not null && Cached(expected) is { } held) return held;
            var data = await client.DownloadBundleAsync(address, ct);
            var actual = Convert.ToHexStringLower(SHA256.HashData(data));
            if (expected is not null && actual != expected)
                throw new PolicyGridApiException(502, "backend_error", $"bundle {code} failed verification: expected sha256 {expected}, downloaded {actual}");
            return Cached(actual) ?? Unpack(actual, data);
        }
        finally
        {
            gate.Release();
        }
    }

    private static (string Address, string? Sha256) Address(string code)
    {
        var m = BundleUri().Match(code);
        if (m.Success) return ($"/bundles/sha256/{m.Groups[1].Value.ToLowerInvariant()}", m.Groups[1].Value.ToLowerInvariant());
        if (Uri.TryCreate(code, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
        {
            var sha = ShaInPath().Match(uri.AbsolutePath);
            return (code, sha.Success ? sha.Groups[1].Value.ToLowerInvariant() : null);
        }
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
        Directory.CreateDirectory(cacheDirectory);
        var staging = Path.Combine(cacheDirectory, $".{sha[..12]}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
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
