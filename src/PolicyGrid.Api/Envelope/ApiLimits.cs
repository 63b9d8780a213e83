namespace PolicyGrid.Api.Envelope;

/// <summary>Size limits of the HTTP surface (configuration section <c>PolicyGrid:Api</c>).</summary>
public sealed class ApiLimits
{
    public const string Section = "PolicyGrid:Api";

    /// <summary>JSON request bodies (documents, filters, execute_policy). Default 1 MiB.</summary>
    public long MaxBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>Uploaded bundle archives. Default 64 MiB.</summary>
    public long MaxBundleBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>The request target (path and query string, as sent). Default 8 KiB; longer is a 414.</summary>
    public int MaxRequestTargetBytes { get; set; } = 8 * 1024;

    /// <summary>All request header lines together (names, values and separators). Default 32 KiB; more is a 431.</summary>
    public int MaxRequestHeadersBytes { get; set; } = 32 * 1024;

    /// <summary>Request header lines. Default 100; more is a 431.</summary>
    public int MaxRequestHeaderCount { get; set; } = 100;

    public static string Setting(string name) => $"{Section}:{name}";
}
