namespace PolicyGrid.Api.Envelope;

/// <summary>Size limits of the HTTP surface (configuration section <c>PolicyGrid:Api</c>).</summary>
public sealed class ApiLimits
{
    public const string Section = "PolicyGrid:Api";

    /// <summary>JSON request bodies (documents, filters, execute_policy). Default 1 MiB.</summary>
    public long MaxBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>Uploaded bundle archives. Default 64 MiB.</summary>
    public long MaxBundleBytes { get; set; } = 64L * 1024 * 1024;
}
