using PolicyGrid.Runtime.Bundles;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Turns a policy's <c>code</c> (bundle://sha256/…, http(s)://, file://) into an unpacked, verified
/// bundle directory. The bundle cache implements it; errors are the contract's (400 unreadable
/// archive, 404 unknown bundle, 502/503 fetch failures).
/// </summary>
public interface IPolicyBundleSource
{
    Task<BundleDirectory> GetAsync(string code, CancellationToken ct);
}
