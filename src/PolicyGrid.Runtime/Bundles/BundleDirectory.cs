namespace PolicyGrid.Runtime.Bundles;

/// <summary>
/// An unpacked, verified bundle on disk: <c>Root/code/function.py</c>, plus the site-packages
/// directory of its virtualenv when the bundle has a requirements.txt. Readable by the
/// unprivileged user the Python workers run as.
/// </summary>
public sealed record BundleDirectory(string Sha256, string Root, string? SitePackages);
