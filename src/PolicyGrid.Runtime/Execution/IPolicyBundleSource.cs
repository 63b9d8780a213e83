using PolicyGrid.Runtime.Bundles;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Turns a policy's <c>code</c> (bundle://sha256/…, http(s)://, file://) into an unpacked, verified
/// bundle directory. The bundle cache implements it; errors are the contract's (400 unreadable
/// archive, 404 unknown bundle, 502/503 fetch failures).
/// </summary>
public interface IPolicyBundleSource
{
    /// <summary>
    /// The bundle <paramref name="code"/> names. <paramref name="expectedSha256"/> is the policy document's
    /// <c>code_sha256</c> (null when it has none): bytes with another hash are refused with a 502, so a URL
    /// that now serves other code never runs under a revision that recorded different code.
    /// </summary>
    Task<BundleDirectory> GetAsync(string code, string? expectedSha256, CancellationToken ct);

    /// <summary>
    /// The bundle <paramref name="code"/> names as its source serves it now, for the dry load at create/update:
    /// an unpinned URL is fetched again even if this process fetched it before, because what the registry
    /// records must be what the URL serves today.
    /// </summary>
    Task<BundleDirectory> FetchCurrentAsync(string code, CancellationToken ct) => GetAsync(code, null, ct);

    /// <summary>
    /// Puts back <paramref name="bundle"/>, answered earlier, when its directory was removed since (the bundle cache's
    /// sweep, here or in another process sharing it): unpacked again at the same place, verified. True when it was
    /// gone and is back (a load that failed on it may be tried again); false when it was there or is not this source's.
    /// </summary>
    Task<bool> RestoreAsync(BundleDirectory bundle, CancellationToken ct) => Task.FromResult(false);
}
