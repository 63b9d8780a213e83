namespace PolicyGrid.Runtime.Bundles;

/// <summary>Bundle fetching, unpacking and requirements, bound from <c>PolicyGrid:Runtime:Bundles</c>.</summary>
public sealed class BundleCacheOptions
{
    public const string Section = "PolicyGrid:Runtime:Bundles";

    /// <summary>
    /// Where unpacked bundles live. Must be readable by the unprivileged worker user, so not under /root
    /// (which is mode 700); directories are made 0755 and files 0644.
    /// </summary>
    public string CacheDirectory { get; set; } = "/var/tmp/policygrid-bundles";

    /// <summary>
    /// How long an unpacked bundle may go unused (by any server or job sharing <see cref="CacheDirectory"/>) before the
    /// periodic sweep removes it; zero keeps every bundle for good. Its next use unpacks it again from the bundle store.
    /// </summary>
    public TimeSpan KeepUnusedFor { get; set; } = TimeSpan.FromDays(7);

    /// <summary>The shortest <see cref="KeepUnusedFor"/> other than zero: a use is marked at most every quarter of it, and at most hourly.</summary>
    public static readonly TimeSpan MinKeepUnusedFor = TimeSpan.FromMinutes(1);

    /// <summary>Let bundle URLs reach loopback addresses (127.0.0.0/8, ::1). Off: any writer could probe this host.</summary>
    public bool AllowLoopback { get; set; }

    /// <summary>Let bundle URLs reach private, link-local and other non-public addresses (10/8, 192.168/16, 169.254/16, fc00::/7 ...).</summary>
    public bool AllowPrivateNetworks { get; set; }

    /// <summary>Accept <c>file://</c> bundle URLs (reads any file the server can read; for trusted single-user setups).</summary>
    public bool AllowFileUrls { get; set; }

    /// <summary>Largest archive accepted from a URL or file.</summary>
    public long MaxArchiveBytes { get; set; } = 100L * 1024 * 1024;

    /// <summary>Time for one download attempt to get the answer's headers, and again for its body to arrive in full.</summary>
    public TimeSpan DownloadTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Retries of a download that failed on the network or with a 5xx (with jittered backoff).</summary>
    public int DownloadRetries { get; set; } = 2;

    public ArchiveLimits Limits { get; set; } = new();

    /// <summary>Python used to run pip for a bundle's requirements.txt.</summary>
    public string PythonExecutable { get; set; } = "python3";

    /// <summary>Extra pip options, e.g. <c>["--no-index", "--find-links", "/srv/wheels"]</c> where no index is reachable.</summary>
    public List<string> PipOptions { get; set; } = [];

    /// <summary>Longest a requirements install may take.</summary>
    public TimeSpan PipTimeout { get; set; } = TimeSpan.FromMinutes(5);
}

/// <summary>Caps that keep a hostile archive from filling the disk or the inode table.</summary>
public sealed class ArchiveLimits
{
    public int MaxEntries { get; set; } = 10_000;
    public long MaxTotalBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>Most unpacked bytes per archive byte (a zip bomb unpacks thousands of times its size).</summary>
    public double MaxCompressionRatio { get; set; } = 200;

    /// <summary>Longest the external xz decompressor may run.</summary>
    public TimeSpan XzTimeout { get; set; } = TimeSpan.FromSeconds(60);
}
