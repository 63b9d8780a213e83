using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Sdk.Client;

namespace PolicyGrid.Sdk.Evaluation;

/// <summary>Caps on what one bundle may unpack to.</summary>
public sealed record UnpackLimits(int MaxEntries = 10_000, long MaxTotalBytes = 256L << 20, double MaxRatio = 200)
{
    public static readonly UnpackLimits Default = new();
}

/// <summary>
/// Unpacks a downloaded bundle with the same refusals the servers apply (<see cref="BundleArchive"/>:
/// absolute paths, "..", links leading out, device files, entry/size/ratio caps; .zip, .tar.gz and
/// .tar.xz), answering refusals in the SDK's own exception type.
/// </summary>
internal static class BundleUnpacker
{
    public static void Unpack(byte[] data, string target, UnpackLimits limits)
    {
        var archiveLimits = new ArchiveLimits
        {
            MaxEntries = limits.MaxEntries,
            MaxTotalBytes = limits.MaxTotalBytes,
            MaxCompressionRatio = limits.MaxRatio,
        };
        try
        {
            BundleArchive.Unpack(data, target, archiveLimits);
        }
        catch (PolicyGridException e)
        {
            throw new PolicyGridApiException(e.Status, e.Code, e.Message, inner: e);
        }
    }
}
