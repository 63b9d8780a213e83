using System.Diagnostics;
using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Polly.CircuitBreaker;
using Polly.Timeout;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Runtime.Bundles;

/// <summary>
/// Turns a policy's <c>code</c> into an unpacked, verified bundle on disk, once per content hash:
/// <c>bundle://sha256/&lt;hex&gt;</c> from the bundle store; an http(s) URL whose path is
/// <c>/bundles/sha256/&lt;hex&gt;</c> from the store when it has those bytes; other http(s) URLs through the
/// resilient, network-guarded client (a <c>#sha256=&lt;hex&gt;</c> fragment pins the content); <c>file://</c>
/// only when the operator allows it. Bytes are checked against any known sha256 (the address's own pin, and
/// the <c>code_sha256</c> the registry recorded when it loaded the policy), unpacked safely into
/// <c>&lt;cache&gt;/&lt;sha256&gt;/bundle</c> (built in a temp directory and renamed into place, so readers never
/// see half a bundle), with requirements in <c>&lt;cache&gt;/&lt;sha256&gt;/site-packages</c>, all readable by
/// the unprivileged worker user. Each use is marked on the entry (<see cref="UsedMarker"/>, at most every
/// <see cref="MarkEvery"/> per process) so that <see cref="Prune"/>, in any process sharing the directory, removes only
/// entries nobody used for <see cref="BundleCacheOptions.KeepUnusedFor"/>; a consumer that finds its copy removed
/// unpacks it again (<see cref="RestoreAsync"/>).
/// </summary>
public sealed class BundleCache : IPolicyBundleSource
{
    public const string HttpClientName = "policygrid-bundles";

    private readonly IBundleStore _store;
    private readonly IHttpClientFactory _http;
    private readonly BundleCacheOptions _options;
    private readonly BundleRequirements _requirements;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _unpacking = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Code, string? Sha256), (BundleDirectory Directory, long CheckedAt)> _resolved = new();
    // Where each bundle this process resolved came from, to fetch it again when its copy was removed (RestoreAsync).
    private readonly ConcurrentDictionary<string, string> _sources = new(StringComparer.Ordinal);
    // When this process last marked each entry used (Stopwatch ticks): the marker is written at most every MarkEvery.
    private readonly ConcurrentDictionary<string, long> _marked = new(StringComparer.Ordinal);
    private long _marksWritten;

    // A resolved bundle is looked for on disk again at most this often: every call asking the file
    // system cost as much as the rest of the lookup, and a directory removed under a running server
    // (an operator clearing the cache) is unpacked again within this time.
    private static readonly long RecheckTicks = Stopwatch.Frequency;

    public BundleCache(IBundleStore store, IHttpClientFactory http, BundleCacheOptions options, ILogger<BundleCache>? log = null)
    {
        _store = store;
        _http = http;
        _options = options;
        _requirements = new BundleRequirements(options);
        _log = (ILogger?)log ?? NullLogger.Instance;
        // Checked here, where the options are first used (they are bound without IOptions): serve refuses to start with it.
        var checks = new SettingChecks(BundleCacheOptions.Section);
        checks.Check(options.KeepUnusedFor == TimeSpan.Zero || options.KeepUnusedFor >= BundleCacheOptions.MinKeepUnusedFor, "KeepUnusedFor",
            $"zero (never remove unused bundles) or at least {BundleCacheOptions.MinKeepUnusedFor} (e.g. 7.00:00:00 for a week)", options.KeepUnusedFor);
        if (checks.Result.Failed) throw new OptionsValidationException(BundleCacheOptions.Section, typeof(BundleCacheOptions), checks.Result.Failures);
        MarkEvery = options.KeepUnusedFor > TimeSpan.Zero && options.KeepUnusedFor / 4 < MaxMarkEvery ? options.KeepUnusedFor / 4 : MaxMarkEvery;
        CacheDirectory = TrustedDirectory.Ensure(options.CacheDirectory, CacheDirectoryMode, CacheDirectorySetting);
        SweepAbandonedTemps();
    }

    // Traversable but not listable: a policy finds only the bundles whose hash it knows (its own).
    private const UnixFileMode CacheDirectoryMode =
        UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    private const string CacheDirectorySetting = BundleCacheOptions.Section + ":CacheDirectory";

    /// <summary>The file in an entry whose modification time says when a process last used it.</summary>
    public const string UsedMarker = ".last-used";

    private static readonly TimeSpan MaxMarkEvery = TimeSpan.FromHours(1);

    /// <summary>
    /// How often this process marks an entry it uses (and so how often the sweep runs): hourly, or a quarter of
    /// <see cref="BundleCacheOptions.KeepUnusedFor"/> when that is shorter, so an entry in use always looks used.
    /// </summary>
    public TimeSpan MarkEvery { get; }

    /// <summary>How many times this process wrote an entry's <see cref="UsedMarker"/> (for tests: uses are not marked per call).</summary>
    public long MarksWritten => Interlocked.Read(ref _marksWritten);

    /// <summary>
    /// Checks the cache directory again before each unpack, as at start: removed under a running server (an operator
    /// clearing the cache), it was made again 0755, so every policy could list the bundles of all others, and without
    /// the start's checks, so a directory another local user had made at its path meanwhile was used to hold code.
    /// </summary>
    private void EnsureCacheDirectory()
    {
        try
        {
            TrustedDirectory.Ensure(CacheDirectory, CacheDirectoryMode, CacheDirectorySetting);
        }
        catch (UnusableSettingException e) when (e.InnerException is not IOException)
        {
            // Not the disk (a full or read-only one is answered as such from the inner IOException): the directory
            // is not the server's own. Its path stays in the log, not in the answer.
            _log.LogError(e, "Bundle cache refused: {Reason}", e.Message);
            throw Problems.BackendUnavailable($"the server's bundle cache directory cannot be trusted with policy code; its operator must check {CacheDirectorySetting} (the server's log says why)", e);
        }
    }

    /// <summary>
    /// Temp directories left by a process killed mid-unpack, and entries set aside for removal by one killed mid-delete;
    /// an hour is far beyond any unpack. Answers how many went.
    /// </summary>
    private int SweepAbandonedTemps()
    {
        if (!Directory.Exists(CacheDirectory)) return 0;
        var removed = 0;
        foreach (var temp in Directory.EnumerateDirectories(CacheDirectory, ".*-*"))
        {
            var name = Path.GetFileName(temp);
            var aside = name.StartsWith(AsidePrefix, StringComparison.Ordinal);
            if (!aside && !name.StartsWith(".tmp-", StringComparison.Ordinal)) continue;
            try
            {
                // An entry set aside counts from its last use: one another process is about to put back was just marked.
                if ((aside ? LastUsed(temp) : Directory.GetLastWriteTimeUtc(temp)) >= DateTime.UtcNow.AddHours(-1)) continue;
                Directory.Delete(temp, recursive: true);
                removed++;
            }
            catch (IOException) { /* another process may be cleaning it too */ }
            catch (UnauthorizedAccessException) { }
        }
        return removed;
    }

    public string CacheDirectory { get; }

    public async Task<BundleDirectory> GetAsync(string code, string? expectedSha256, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(code)) throw Problems.Validation("code", "is empty; expected bundle://sha256/<hex>, an http(s) URL or (if allowed) a file:// URL");
        code = code.Trim();
        var expected = string.IsNullOrWhiteSpace(expectedSha256) ? null : expectedSha256.Trim().ToLowerInvariant();
        if (expected is not null && !CodePin.IsSha256(expected)) throw Problems.Validation("code_sha256", $"'{expectedSha256}' is not a sha256 (64 hex digits)");
        // URLs without a pinned hash are fetched once per process; content-addressed codes are checked on disk each time.
        // The key holds the expected hash too, so an update that records new code for the same URL is fetched anew.
        var key = (code, expected);
        if (_resolved.TryGetValue(key, out var known))
        {
            var now = Stopwatch.GetTimestamp();
            if (now - known.CheckedAt < RecheckTicks) return known.Directory;
            // Looked for every second as before (a copy removed meanwhile is unpacked again); its use is marked far more rarely.
            if (Directory.Exists(known.Directory.Root) && MarkUsed(known.Directory.Sha256))
            {
                _resolved[key] = (known.Directory, now);
                return known.Directory;
            }
        }

        // The recorded hash pins the content like a #sha256= fragment does: bytes already verified and unpacked
        // under it are the right ones, whatever the URL serves now.
        var directory = expected is not null && Cached(expected) is { } held && MarkUsed(expected)
            ? Describe(held, expected)
            : await ResolveMarkedAsync(code, expected, ct);
        _resolved[key] = (directory, Stopwatch.GetTimestamp());
        return directory;
    }

    // Resolves and marks the entry used; one set aside by a sweep between the two is resolved (unpacked) again.
    private async Task<BundleDirectory> ResolveMarkedAsync(string code, string? expected, CancellationToken ct)
    {
        var directory = await ResolveAsync(code, expected, ct);
        if (!MarkUsed(directory.Sha256)) directory = await ResolveAsync(code, expected, ct);
        _sources[directory.Sha256] = code;
        return directory;
    }

    /// <summary>
    /// Makes sure <paramref name="bundle"/>, which this cache answered earlier, is still on disk: a consumer that keeps its
    /// path (a function's load spec) asks when a worker could not load it. When the entry was removed (a sweep here or in
    /// another process sharing the directory, an operator), it is fetched from where it came from and unpacked again at
    /// the same place, verified against its sha256; answers true then, and false when it was there all along.
    /// </summary>
    public async Task<bool> RestoreAsync(BundleDirectory bundle, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        if (!CodePin.IsSha256(bundle.Sha256) || Path.GetDirectoryName(bundle.Root) != Path.Combine(CacheDirectory, bundle.Sha256)) return false;
        if (Cached(bundle.Sha256) is not null && MarkUsed(bundle.Sha256)) return false;
        Forget(bundle.Sha256);
        var code = _sources.TryGetValue(bundle.Sha256, out var source) ? source : BundleRef.Scheme + bundle.Sha256;
        await GetAsync(code, bundle.Sha256, ct);
        _log.LogInformation("Bundle {Sha256} had been removed from the cache while in use; unpacked it again", bundle.Sha256);
        return true;
    }

    /// <summary>
    /// Marks the entry of <paramref name="sha"/> used now, unless this process did within <see cref="MarkEvery"/>; false when
    /// the entry is not there (removed, or set aside by a sweep that is removing it: it must be unpacked again).
    /// </summary>
    public bool MarkUsed(string sha)
    {
        var now = Stopwatch.GetTimestamp();
        if (_marked.TryGetValue(sha, out var last) && Stopwatch.GetElapsedTime(last, now) < MarkEvery) return true;
        var marker = Path.Combine(CacheDirectory, sha, UsedMarker);
        try
        {
            // Written, not only stat'ed: a sweep that set the entry aside meanwhile finds a fresh mark and puts it back.
            File.SetLastWriteTimeUtc(marker, DateTime.UtcNow);
        }
        catch (FileNotFoundException)
        {
            // An entry unpacked before uses were marked.
            if (Cached(sha) is null) return false;
            try { File.Create(marker).Dispose(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return Cached(sha) is not null; }
        }
        catch (DirectoryNotFoundException)
        {
            return false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A full or read-only disk: the entry is usable all the same, only another process's sweep may take it sooner.
            _log.LogDebug(e, "could not mark bundle {Sha256} used", sha);
            return Cached(sha) is not null;
        }
        Interlocked.Increment(ref _marksWritten);
        _marked[sha] = now;
        return true;
    }

    // This process's memory of an entry that is gone: its next use looks on disk (and unpacks again).
    private void Forget(string sha)
    {
        _marked.TryRemove(sha, out _);
        foreach (var key in _resolved.Keys)
            if (key.Sha256 == sha || (_resolved.TryGetValue(key, out var known) && known.Directory.Sha256 == sha)) _resolved.TryRemove(key, out _);
    }

    /// <summary>
    /// Removes the entries no process marked used for <see cref="BundleCacheOptions.KeepUnusedFor"/> before
    /// <paramref name="now"/>, except those in <paramref name="inUse"/> (this process's live workers load from them), and
    /// leftovers of interrupted unpacks and removals; answers how many entries went. Safe against a resolve in another
    /// process: an entry is first renamed aside (atomic), then checked again (a use marked meanwhile puts it back), then
    /// deleted; a resolve that finds it gone unpacks it again. Nothing when KeepUnusedFor is zero.
    /// </summary>
    public int Prune(IReadOnlySet<string> inUse, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(inUse);
        if (_options.KeepUnusedFor <= TimeSpan.Zero || !Directory.Exists(CacheDirectory)) return 0;
        var cutoff = now.UtcDateTime - _options.KeepUnusedFor;
        var removed = 0;
        foreach (var entry in Directory.EnumerateDirectories(CacheDirectory))
        {
            var sha = Path.GetFileName(entry);
            if (!CodePin.IsSha256(sha) || inUse.Contains(sha)) continue;
            try
            {
                if (LastUsed(entry) >= cutoff) continue;
                var aside = Path.Combine(CacheDirectory, $"{AsidePrefix}{sha[..16]}-{Guid.NewGuid():N}");
                Directory.Move(entry, aside);
                if (LastUsed(aside) >= cutoff)
                {
                    // Marked used between the look and the rename: back it goes, unless a resolve already unpacked it anew.
                    try { Directory.Move(aside, entry); continue; }
                    catch (IOException) { }
                }
                Forget(sha);
                Directory.Delete(aside, recursive: true);
                removed++;
                _log.LogInformation("Removed bundle {Sha256} from the cache: unused for {KeepUnusedFor}", sha, _options.KeepUnusedFor);
            }
            catch (IOException) { /* another process is removing or replacing it */ }
            catch (UnauthorizedAccessException) { }
        }
        SweepAbandonedTemps();
        return removed;
    }

    // Entries set aside for removal (Prune, DiscardIncomplete); one left by a process killed mid-delete goes with the temps.
    private const string AsidePrefix = ".stale-";

    // When the entry was last marked used; an entry unpacked before uses were marked counts from its unpacking.
    private static DateTime LastUsed(string entry)
    {
        var marker = new FileInfo(Path.Combine(entry, UsedMarker));
        return marker.Exists ? marker.LastWriteTimeUtc : Directory.GetLastWriteTimeUtc(entry);
    }

    public Task<BundleDirectory> FetchCurrentAsync(string code, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(code)) return GetAsync(code, null, ct);
        // Pinned and content-addressed codes cannot change; only an unpinned URL must skip the per-process memory.
        return CodePin.Of(code) is null ? ResolveMarkedAsync(code.Trim(), null, ct) : GetAsync(code, null, ct);
    }

    /// <summary>Fetches, verifies and unpacks: the code's own pin is a 400 (the address is wrong); the document's recorded hash a 502 (the source changed).</summary>
    private async Task<BundleDirectory> ResolveAsync(string code, string? expected, CancellationToken ct)
    {
        var (bytes, pinned) = await FetchAsync(code, ct);
        var sha = pinned;
        if (bytes is not null)
        {
            sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
            if (pinned is not null && sha != pinned)
                throw Problems.BadRequest($"bundle '{Shown(code)}' has sha256 {sha}, not the expected {pinned}; refusing it");
        }
        if (expected is not null && sha != expected)
            throw Problems.BackendError($"bundle '{Shown(code)}' has sha256 {sha}, not the expected {expected} (the policy's code_sha256); refusing it. " +
                                        "Its source now serves other bytes than the registry loaded; update the policy to load and record them");
        return await UnpackOnceAsync(sha!, bytes, ct);
    }

    /// <summary>
    /// The archive bytes and the sha256 they must have, when the code names one. No bytes (null) when the
    /// code pins a hash that is already unpacked.
    /// </summary>
    private async Task<(byte[]? Bytes, string? Sha256)> FetchAsync(string code, CancellationToken ct)
    {
        if (code.StartsWith(BundleRef.Scheme, StringComparison.OrdinalIgnoreCase))
        {
            var sha = ParseSha(code[BundleRef.Scheme.Length..], code);
            if (Cached(sha) is not null) return (null, sha);
            var stored = await _store.GetAsync(sha, ct) ?? throw Problems.NotFound($"bundle {BundleRef.Scheme}{sha} was not found; upload it first");
            return (stored, sha);
        }
        if (!Uri.TryCreate(code, UriKind.Absolute, out var uri))
            throw Problems.Validation("code", $"'{code}' is not a bundle address: expected bundle://sha256/<hex>, an http(s) URL or (if allowed) a file:// URL");

        if (uri.Scheme is "http" or "https")
        {
            var pinned = PinnedSha(uri);
            if (pinned is not null)
            {
                if (Cached(pinned) is not null) return (null, pinned);
                if (await _store.GetAsync(pinned, ct) is { } local) return (local, pinned);
            }
            return (await DownloadAsync(uri, ct), pinned);
        }
        if (uri.Scheme == "file")
        {
            if (!_options.AllowFileUrls)
                throw Problems.BadRequest($"file:// bundle URLs are disabled on this server ('{code}'); upload the bundle instead (an operator can allow them with PolicyGrid:Runtime:Bundles:AllowFileUrls)");
            var path = uri.LocalPath;
            var info = new FileInfo(path);
            if (!info.Exists) throw Problems.BadRequest($"bundle file '{path}' does not exist");
            if (info.Length > _options.MaxArchiveBytes) throw Problems.TooLarge($"bundle file '{path}' is {info.Length} bytes; the limit is {_options.MaxArchiveBytes}");
            // Capped as it is read, not only by the size the file system states: /dev/zero or a /proc file states 0
            // bytes and read whole would take all the server's memory.
            await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, useAsync: true);
            using var read = await BoundedRead.ReadAsync(file, _options.MaxArchiveBytes,
                () => Problems.TooLarge($"bundle file '{path}' is larger than the limit of {_options.MaxArchiveBytes} bytes"), ct);
            return (read.ToArray(), PinnedSha(uri));
        }
        throw Problems.Validation("code", $"'{code}' uses scheme '{uri.Scheme}'; expected bundle://sha256/<hex>, http(s):// or file://");
    }

    private async Task<byte[]> DownloadAsync(Uri uri, CancellationToken ct)
    {
        var client = _http.CreateClient(HttpClientName);
        // The resilience pipeline times the wait for the answer's headers; the body is read after it returns, so it
        // gets a deadline of its own: else a server that sends headers and then a trickle holds the fetch forever.
        using var bodyDeadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        try
        {
            using var response = await client.GetAsync(uri, HttpCompletionOption.ResponseHeadersRead, ct);
            if (!response.IsSuccessStatusCode)
                throw Problems.BackendError($"fetching bundle {Redacted(uri)} answered {(int)response.StatusCode} {response.ReasonPhrase}");
            if (response.Content.Headers.ContentLength > _options.MaxArchiveBytes)
                throw Problems.TooLarge($"bundle {Redacted(uri)} is {response.Content.Headers.ContentLength} bytes; the limit is {_options.MaxArchiveBytes}");
            bodyDeadline.CancelAfter(_options.DownloadTimeout);
            await using var body = await response.Content.ReadAsStreamAsync(bodyDeadline.Token);
            using var buffer = await BoundedRead.ReadAsync(body, _options.MaxArchiveBytes,
                () => Problems.TooLarge($"bundle {Redacted(uri)} is larger than the limit of {_options.MaxArchiveBytes} bytes"), bodyDeadline.Token);
            return buffer.ToArray();
        }
        catch (Exception e) when (Refused(e) is { } refused)
        {
            throw Problems.BadRequest(refused.Message);
        }
        catch (OperationCanceledException e) when (bodyDeadline.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            throw Problems.BackendUnavailable(
                $"could not fetch bundle {Redacted(uri)}: its body did not finish within {_options.DownloadTimeout.TotalSeconds:0.###}s " +
                $"(PolicyGrid:Runtime:Bundles:DownloadTimeout)", e);
        }
        catch (Exception e) when (e is HttpRequestException or TimeoutRejectedException or BrokenCircuitException or IOException
                                      || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            throw Problems.BackendUnavailable($"could not fetch bundle {Redacted(uri)}: {e.Message}", e);
        }
    }

    private static BundleUrlRefusedException? Refused(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is BundleUrlRefusedException r) return r;
        return null;
    }

    /// <summary>URLs may carry credentials in user info or query; keep them out of messages.</summary>
    private static string Redacted(Uri uri) => CodePin.Redacted(uri);

    private static string Shown(string code) => CodePin.Shown(code);

    private string? Cached(string sha)
    {
        var root = Path.Combine(CacheDirectory, sha);
        return Directory.Exists(Path.Combine(root, "bundle")) ? root : null;
    }

    private async Task<BundleDirectory> UnpackOnceAsync(string sha, byte[]? bytes, CancellationToken ct)
    {
        if (Cached(sha) is { } done) return Describe(done, sha);
        var gate = _unpacking.GetOrAdd(sha, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(ct);
        try
        {
            if (Cached(sha) is { } raced) return Describe(raced, sha);
            bytes ??= await _store.GetAsync(sha, ct) ?? throw Problems.NotFound($"bundle {BundleRef.Scheme}{sha} was not found; upload it first");
            EnsureCacheDirectory();
            var temp = Path.Combine(CacheDirectory, $".tmp-{sha[..16]}-{Guid.NewGuid():N}");
            try
            {
                BundleArchive.Unpack(bytes, Path.Combine(temp, "bundle"), _options.Limits);
                var requirements = Path.Combine(temp, "bundle", "code", "requirements.txt");
                if (File.Exists(requirements) && HasRequirements(requirements))
                {
                    var site = Path.Combine(temp, "site-packages");
                    BundleArchive.CreateDirectory(site);
                    await _requirements.InstallAsync(requirements, site, ct);
                    MakeReadable(site);
                }
                // Made before the rename, so no process sees the entry without a mark of its use.
                File.Create(Path.Combine(temp, UsedMarker)).Dispose();
                var final = Path.Combine(CacheDirectory, sha);
                DiscardIncomplete(final, sha);
                try { Directory.Move(temp, final); }
                catch (IOException) when (Cached(sha) is not null) { /* another process unpacked the same bundle first */ }
                _log.LogInformation("Unpacked bundle {Sha256} into {Directory}", sha, final);
                return Describe(final, sha);
            }
            finally
            {
                if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            }
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// A folder at the bundle's place without its <c>bundle/</c> tree is left over from an older
    /// layout or a crash mid-rename; it would make the rename fail forever, so it goes first.
    /// </summary>
    private void DiscardIncomplete(string final, string sha)
    {
        if (!Directory.Exists(final) || Cached(sha) is not null) return;
        var aside = Path.Combine(CacheDirectory, $"{AsidePrefix}{sha[..16]}-{Guid.NewGuid():N}");
        try
        {
            Directory.Move(final, aside);
            Directory.Delete(aside, recursive: true);
            _log.LogWarning("Removed an incomplete bundle folder for {Sha256}", sha);
        }
        catch (IOException) { /* another process is replacing it: the rename below settles it */ }
        catch (UnauthorizedAccessException) { /* same */ }
    }

    private static BundleDirectory Describe(string root, string sha)
    {
        var site = Path.Combine(root, "site-packages");
        return new BundleDirectory(sha, Path.Combine(root, "bundle"), Directory.Exists(site) ? site : null);
    }

    private static bool HasRequirements(string file) =>
        File.ReadLines(file).Select(l => l.Split('#')[0].Trim()).Any(l => l.Length > 0);

    /// <summary>pip writes with the server's umask; the worker user must be able to read everything.</summary>
    private static void MakeReadable(string directory)
    {
        if (OperatingSystem.IsWindows()) return;
        foreach (var entry in new DirectoryInfo(directory).EnumerateFileSystemInfos("*", SearchOption.AllDirectories).Prepend(new DirectoryInfo(directory)))
        {
            if (entry.LinkTarget is not null) continue;
            if (entry is DirectoryInfo) entry.UnixFileMode = BundleArchive.DirectoryMode;
            else entry.UnixFileMode = (entry.UnixFileMode & UnixFileMode.UserExecute) != 0 ? BundleArchive.ExecutableMode : BundleArchive.FileMode;
        }
    }

    private static string ParseSha(string hex, string code)
    {
        var sha = hex.Trim().ToLowerInvariant();
        if (!CodePin.IsSha256(sha)) throw Problems.Validation("code", $"'{code}' does not end in a sha256 (64 hex digits)");
        return sha;
    }

    /// <summary>The sha256 a URL pins: its path /bundles/sha256/&lt;hex&gt; (this API's own download route) or a #sha256=&lt;hex&gt; fragment.</summary>
    private static string? PinnedSha(Uri uri)
    {
        if (CodePin.OfBundlePath(uri) is { } fromPath) return fromPath;
        if (uri.Fragment.StartsWith("#sha256=", StringComparison.OrdinalIgnoreCase)) return ParseSha(uri.Fragment[8..], uri.ToString());
        return null;
    }
}
