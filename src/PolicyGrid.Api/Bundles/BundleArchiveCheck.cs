using System.Formats.Tar;
using System.IO.Compression;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Bundles;

/// <summary>
/// Refuses an upload that is not a readable archive before it is stored, so a bundle address
/// always names something the runtime can open. Safety of the contents (paths, links, sizes) is
/// checked again by the runtime when it unpacks.
/// </summary>
public static class BundleArchiveCheck
{
    public static void Validate(byte[] archive)
    {
        var kind = Kind(archive);
        try
        {
            switch (kind)
            {
                case ArchiveKind.Zip:
                    using (var zip = new ZipArchive(new MemoryStream(archive), ZipArchiveMode.Read))
                        _ = zip.Entries.Count;
                    break;
                case ArchiveKind.Gzip:
                    using (var gzip = new GZipStream(new MemoryStream(archive), CompressionMode.Decompress))
                    using (var tar = new TarReader(gzip))
                        while (tar.GetNextEntry() is not null) { }
                    break;
                case ArchiveKind.Xz:
                    break; // the runtime's unpacker reads xz; the magic bytes are what can be checked here
                default:
                    throw Problems.BadRequest("the bundle is not a readable archive: expected a .zip, .tar.xz or .tar.gz (it starts with neither PK, 1F 8B nor FD 37 7A 58 5A)");
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException or FormatException)
        {
            throw Problems.BadRequest($"the bundle is not a readable {kind.ToString().ToLowerInvariant()} archive: {e.Message}");
        }
    }

    public enum ArchiveKind { Unknown, Zip, Gzip, Xz }

    public static ArchiveKind Kind(ReadOnlySpan<byte> b) =>
        b.StartsWith("PK\x03\x04"u8) || b.StartsWith("PK\x05\x06"u8) ? ArchiveKind.Zip
        : b.StartsWith((ReadOnlySpan<byte>)[0x1F, 0x8B]) ? ArchiveKind.Gzip
        : b.StartsWith((ReadOnlySpan<byte>)[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) ? ArchiveKind.Xz
        : ArchiveKind.Unknown;

    public static string MediaType(ReadOnlySpan<byte> b) => Kind(b) switch
    {
        ArchiveKind.Zip => "application/zip",
        ArchiveKind.Gzip => "application/gzip",
        ArchiveKind.Xz => "application/x-xz",
        _ => "application/octet-stream",
    };

    public static string Extension(ReadOnlySpan<byte> b) => Kind(b) switch
    {
        ArchiveKind.Zip => ".zip",
        ArchiveKind.Gzip => ".tar.gz",
        ArchiveKind.Xz => ".tar.xz",
        _ => "",
    };
}
