using PolicyGrid.Runtime.Bundles;

namespace PolicyGrid.Api.Bundles;

/// <summary>How a stored bundle is served: media type and file extension from its magic bytes.</summary>
public static class BundleMediaTypes
{
    public static string MediaType(ReadOnlySpan<byte> archive) => BundleArchive.Detect(archive) switch
    {
        BundleArchiveKind.Zip => "application/zip",
        BundleArchiveKind.TarGz => "application/gzip",
        BundleArchiveKind.TarXz => "application/x-xz",
        _ => "application/octet-stream",
    };

    public static string Extension(ReadOnlySpan<byte> archive) => BundleArchive.Detect(archive) switch
    {
        BundleArchiveKind.Zip => ".zip",
        BundleArchiveKind.TarGz => ".tar.gz",
        BundleArchiveKind.TarXz => ".tar.xz",
        _ => "",
    };
}
