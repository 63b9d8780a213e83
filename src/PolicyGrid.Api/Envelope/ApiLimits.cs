using Microsoft.Extensions.Options;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Api.Envelope;

/// <summary>Size and time limits of the HTTP surface (configuration section <c>PolicyGrid:Api</c>).</summary>
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

    /// <summary>
    /// How long one query may spend evaluating its filter, over all documents and conditions together (each regex match
    /// is also bounded on its own). Default 2 s.
    /// </summary>
    public TimeSpan QueryTimeBudget { get; set; } = FilterBudget.DefaultLimit;
}

/// <summary>Refuses API limits no request could work with, at start, naming each.</summary>
public sealed class ApiLimitsValidator : IValidateOptions<ApiLimits>
{
    public ValidateOptionsResult Validate(string? name, ApiLimits options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var checks = new PolicyGrid.Runtime.SettingChecks(ApiLimits.Section);
        // A body limit of 0 or less was accepted and then refused every request with a body: "larger than the limit of -5 bytes".
        checks.Check(options.MaxBodyBytes > 0, "MaxBodyBytes", "greater than zero", options.MaxBodyBytes);
        checks.Check(options.MaxBundleBytes > 0, "MaxBundleBytes", "greater than zero", options.MaxBundleBytes);
        checks.Check(options.QueryTimeBudget > TimeSpan.Zero, "QueryTimeBudget", "greater than zero", options.QueryTimeBudget);
        checks.Check(options.MaxRequestTargetBytes > 0, "MaxRequestTargetBytes", "greater than zero", options.MaxRequestTargetBytes);
        checks.Check(options.MaxRequestHeadersBytes > 0, "MaxRequestHeadersBytes", "greater than zero", options.MaxRequestHeadersBytes);
        checks.Check(options.MaxRequestHeaderCount > 0, "MaxRequestHeaderCount", "greater than zero", options.MaxRequestHeaderCount);
        return checks.Result;
    }
}
