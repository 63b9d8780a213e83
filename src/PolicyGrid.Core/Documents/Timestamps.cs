using System.Globalization;

namespace PolicyGrid.Core.Documents;

/// <summary>
/// The one timestamp format of stored documents: ISO-8601 in UTC with milliseconds,
/// e.g. <c>2026-11-25T13:07:21.123Z</c>. Documents never read the clock themselves; the layer that
/// stores them passes <c>now</c> (see <c>WithTimestamps</c> on <see cref="PolicyRule"/> and
/// <see cref="FunctionDeployment"/>), which keeps Core pure and tests deterministic.
/// </summary>
public static class Timestamps
{
    public static string Format(DateTimeOffset instant) =>
        instant.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    /// <summary>The stored creation time when there is one, else <paramref name="now"/>.</summary>
    internal static string CreatedAt(string? existing, DateTimeOffset now) =>
        string.IsNullOrEmpty(existing) ? Format(now) : existing;
}
