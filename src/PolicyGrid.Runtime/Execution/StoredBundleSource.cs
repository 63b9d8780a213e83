using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Bundles;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Resolves policy code held in this server's <see cref="IBundleStore"/>: <c>bundle://sha256/&lt;hex&gt;</c>,
/// or a URL of this API's own <c>/bundles/sha256/&lt;hex&gt;</c> path. The archive is verified
/// against its hash and unpacked safely, once per hash, into a directory the worker user can read.
/// Other URLs (fetching from elsewhere through a network guard) are the bundle cache's job; this
/// source refuses them with a 400 that says so. Register a fuller <see cref="IPolicyBundleSource"/>
/// to replace it.
/// </summary>
public sealed partial class StoredBundleSource(IBundleStore store, BundleSourceOptions options, RequirementsInstaller? requirements = null) : IPolicyBundleSource
{
    /// <summary>Inside an unpacked bundle: where code/requirements.txt was installed.</summary>
    public const string SitePackagesDirectory = ".site-packages";

    private readonly ConcurrentDictionary<string, SemaphoreSlim> gates = new(StringComparer.Ordinal);

    [GeneratedRegex("^bundle://sha256/([0-9a-fA-F]{64})$")]
    private static partial Regex BundleAddress();

    [GeneratedRegex("/bundles/sha256/([0-9a-fA-F]{64})/?$")]
    private static partial Regex BundlePath();

    public async Task<BundleDirectory> GetAsync(string code, CancellationToken ct)
    {
        var sha = ShaOf(code ?? "");
        var root = Path.Combine(options.CacheDirectory, sha);
        if (Directory.Exists(root)) return Unpacked(sha, root);
        var gate = gates.GetOrAdd(sha, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(ct);
        try
        {
            if (Directory.Exists(root)) return Unpacked(sha, root);
            var archive = await store.GetAsync(sha, ct)
                ?? throw Problems.Validation("code", $"no bundle with sha256 {sha} has been uploaded (POST /bundles)");
            var actual = Convert.ToHexStringLower(SHA256.HashData(archive));
            if (actual != sha)
                throw Problems.BackendError($"stored bundle {sha} is corrupt: its content hashes to {actual}");
            await UnpackAsync(sha, archive, root, ct);
            return Unpacked(sha, root);
        }
        finally
        {
            gate.Release();
        }
    }

    private static string ShaOf(string code)
    {
        var address = BundleAddress().Match(code);
        if (address.Success) return address.Groups[1].Value.ToLowerInvariant();
        if (Uri.TryCreate(code, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
        {
            var path = BundlePath().Match(uri.AbsolutePath);
            // Content addressed: whatever host the URL names, the bytes are verified against this hash.
            if (path.Success) return path.Groups[1].Value.ToLowerInvariant();
        }
        throw Problems.Validation("code", $"'{code}' is not a bundle this server holds; upload the archive (POST /bundles) and use its bundle://sha256/... code");
    }

    private static BundleDirectory Unpacked(string sha, string root)
    {
        var site = Path.Combine(root, SitePackagesDirectory);
        return new BundleDirectory(sha, root, Directory.Exists(site) ? site : null);
    }

    private async Task UnpackAsync(string sha, byte[] archive, string root, CancellationToken ct)
    {
        EnsureCacheDirectory();
        var staging = Path.Combine(options.CacheDirectory, $".{sha[..12]}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            ArchiveUnpacker.Unpack(archive, staging, options.Limits);
            var wanted = Path.Combine(staging, "code", "requirements.txt");
            if (File.Exists(wanted) && RequirementsInstaller.HasRequirements(wanted))
            {
                if (requirements is null)
                    throw Problems.Validation("code", "the bundle has code/requirements.txt, but this server installs no requirements");
                await requirements.InstallAsync(wanted, Path.Combine(staging, SitePackagesDirectory), ct);
            }
            MakeReadable(staging);
            try
            {
                Directory.Move(staging, root);
            }
            catch (IOException) when (Directory.Exists(root))
            {
                Directory.Delete(staging, recursive: true); // another process unpacked the same bytes first
            }
        }
        catch
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            throw;
        }
    }

    private void EnsureCacheDirectory()
    {
        Directory.CreateDirectory(options.CacheDirectory);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(options.CacheDirectory, DirectoryMode);
    }

    private const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
        | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

    private const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    // Workers run as an unprivileged user: they read the code, nobody but the server writes it.
    private static void MakeReadable(string root)
    {
        if (OperatingSystem.IsWindows()) return;
        File.SetUnixFileMode(root, DirectoryMode);
        foreach (var dir in Directory.EnumerateDirectories(root, "*", SearchOption.AllDirectories)) File.SetUnixFileMode(dir, DirectoryMode);
        foreach (var file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)) File.SetUnixFileMode(file, FileMode);
    }
}

/// <summary>Where <see cref="StoredBundleSource"/> unpacks bundles and how big they may be (<c>PolicyGrid:Runtime:Bundles</c>).</summary>
public sealed class BundleSourceOptions
{
    public string CacheDirectory { get; set; } = "/var/tmp/policygrid-bundles";
    public int MaxEntries { get; set; } = 10_000;
    public long MaxUnpackedBytes { get; set; } = 256L << 20;
    public int MaxCompressionRatio { get; set; } = 200;
    public UnpackLimits Limits => new(MaxEntries, MaxUnpackedBytes, MaxCompressionRatio);

    /// <summary>
    /// Extra pip arguments for installing code/requirements.txt, e.g. <c>--no-index --find-links /srv/wheels</c>.
    /// Wheels only by default: installing an sdist runs its build code with the server's rights.
    /// </summary>
    public string[] PipOptions { get; set; } = ["--only-binary", ":all:"];

    /// <summary>Longest a requirements install may take.</summary>
    public TimeSpan InstallTimeout { get; set; } = TimeSpan.FromMinutes(5);
}
