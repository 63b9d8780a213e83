using Microsoft.AspNetCore.Http;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Documents;

/// <summary>Document revisions as HTTP entity tags: ETag on reads, If-Match on writes.</summary>
public static class ETags
{
    public static void Set(HttpResponse response, string revision) => response.Headers.ETag = $"\"{revision}\"";

    /// <summary>
    /// The If-Match precondition of a write; null when there is none or it is <c>*</c> (any revision of a document
    /// that exists, which a write of a missing one answers with its 404 anyway). A header that is sent but empty or
    /// not a list of entity tags is a 400: taking it for "no condition" would make the write unconditional, which
    /// is exactly what a caller who sent one did not want (an unset shell variable in <c>-H "If-Match: $ETAG"</c>).
    /// </summary>
    public static IfMatchCondition? IfMatch(HttpRequest request)
    {
        if (!request.Headers.TryGetValue(HeaderName, out var values)) return null;
        var header = values.ToString().Trim();
        if (header.Length == 0)
            throw Problems.BadRequest($"the {HeaderName} header is empty; send the ETag a read answered (\"<revision>\"), or leave the header out for an unconditional write");
        if (header == "*") return null;
        var strong = new List<string>();
        var weak = new List<string>();
        var rest = header.AsSpan();
        while (true)
        {
            rest = rest.TrimStart(" \t");
            if (rest.IsEmpty) break;
            if (rest[0] == ',') { rest = rest[1..]; continue; } // empty list elements are allowed (RFC 9110 5.6.1)
            var isWeak = rest.StartsWith("W/", StringComparison.Ordinal);
            var tag = isWeak ? rest[2..] : rest;
            var close = tag.Length > 0 && tag[0] == '"' ? tag[1..].IndexOf('"') : -1;
            if (close < 0) throw Malformed(header);
            var opaque = tag.Slice(1, close);
            if (opaque.Length == 0)
                throw Problems.BadRequest($"the {HeaderName} header holds an empty entity tag (\"\"); a revision is never empty: send the ETag a read answered (\"<revision>\")");
            foreach (var c in opaque)
                if (c < 0x21 || c == 0x7F) throw Malformed(header);
            (isWeak ? weak : strong).Add(opaque.ToString());
            rest = tag[(close + 2)..].TrimStart(" \t");
            if (!rest.IsEmpty && rest[0] != ',') throw Malformed(header);
        }
        if (strong.Count == 0 && weak.Count == 0) throw Malformed(header);
        return new IfMatchCondition(header, strong, weak);
    }

    public const string HeaderName = "If-Match";

    private static PolicyGridException Malformed(string header) =>
        Problems.BadRequest($"the {HeaderName} header '{Shown(header)}' is not an entity tag: send the ETag a read answered, in quotes (\"<revision>\"), " +
            "several separated by commas, or *");

    private static string Shown(string header) =>
        header.Length <= 80 ? header : header[..80] + "…";
}

/// <summary>
/// An If-Match list (RFC 9110 13.1.1): the write goes ahead when any of its strong tags is the current revision.
/// Weak tags never match: If-Match compares strongly, so <c>W/"7"</c> does not match revision 7.
/// </summary>
public sealed record IfMatchCondition(string Header, IReadOnlyList<string> Strong, IReadOnlyList<string> Weak)
{
    public bool Matches(string revision) => Strong.Contains(revision, StringComparer.Ordinal);

    /// <summary>
    /// The 409 for a document whose current revision is none of the listed strong tags. <paramref name="document"/>
    /// names it for a person ("'p:1.0-x'", "executor 'edge-1'").
    /// </summary>
    public PolicyGridException Mismatch(string document, string current)
    {
        const string WeakRule = "weak tags never match If-Match, which compares entity tags strongly (RFC 9110)";
        if (Weak.Contains(current, StringComparer.Ordinal))
            return Problems.Conflict($"{document} was not changed: If-Match names its current revision only as a weak tag, W/\"{current}\", and {WeakRule}; " +
                $"send the ETag as a read answered it: \"{current}\"");
        if (Strong.Count == 0)
            return Problems.Conflict($"{document} was not changed: If-Match {Header} holds only weak tags, and {WeakRule}; " +
                $"the current revision is \"{current}\": read it again and send its ETag");
        var asked = string.Join(", ", Strong.Select(s => $"\"{s}\""));
        var weak = Weak.Count == 0 ? "" : $" ({WeakRule})";
        return Problems.Conflict($"{document} has changed: If-Match asked for revision {asked}{weak} but the current revision is \"{current}\"; read it again and retry");
    }
}
