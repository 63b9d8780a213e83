namespace PolicyGrid.Core.Ports;

/// <summary>A content-addressed bundle: <c>bundle://sha256/&lt;hex&gt;</c>.</summary>
public sealed record BundleRef(string Sha256, long Size)
{
    public const string Scheme = "bundle://sha256/";
    public string Code => Scheme + Sha256;
}

/// <summary>Archive bytes stored by their sha256. Embedded: a directory; Dapr: a bucket binding.</summary>
public interface IBundleStore
{
    /// <summary>Stores the bytes (idempotent) and answers their address.</summary>
    Task<BundleRef> PutAsync(ReadOnlyMemory<byte> archive, CancellationToken ct = default);

    /// <summary>The archive bytes, or null when no bundle has that hash.</summary>
    Task<byte[]?> GetAsync(string sha256, CancellationToken ct = default);
}
