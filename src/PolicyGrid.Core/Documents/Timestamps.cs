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

    /// <summary>
    /// The instant <paramref name="age"/> before <paramref name="now"/>, for retention; null when that reaches back
    /// before 1970 (nothing stored is that old, and subtracting an age that large from now would overflow).
    /// </summary>
    public static DateTimeOffset? Cutoff(DateTimeOffset now, TimeSpan age) =>
        age < now - DateTimeOffset.UnixEpoch ? now - age : null;

    /// <summary>The stored creation time when there is one, else <paramref name="now"/>.</summary>
    internal static string CreatedAt(string? existing, DateTimeOffset now) =>
        string.IsNullOrEmpty(existing) ? Format(now) : existing;
}
