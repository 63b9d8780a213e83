using Microsoft.AspNetCore.Http;

namespace PolicyGrid.Api.Documents;

/// <summary>Document revisions as HTTP entity tags: ETag on reads, If-Match on writes.</summary>
public static class ETags
{
    public static void Set(HttpResponse response, string revision) => response.Headers.ETag = $"\"{revision}\"";

    /// <summary>The revision an If-Match asks for; null when absent or "*" (any revision).</summary>
    public static string? IfMatch(HttpRequest request)
    {
        var value = request.Headers.IfMatch.ToString().Trim();
        if (value.Length == 0 || value == "*") return null;
        if (value.StartsWith("W/", StringComparison.Ordinal)) value = value[2..];
        return value.Trim('"');
    }
}
