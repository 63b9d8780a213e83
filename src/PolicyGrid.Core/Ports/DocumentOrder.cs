using System.Text.Json.Nodes;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// The order of query results: each sort key's first value (Core's total order, versions compared as
/// versions), then the id so that pages are stable.
/// </summary>
public sealed class DocumentOrder(IReadOnlyList<SortKey> keys) : IComparer<StoredDocument>
{
    public int Compare(StoredDocument? x, StoredDocument? y)
    {
        if (ReferenceEquals(x, y)) return 0;
        if (x is null) return -1;
        if (y is null) return 1;
        foreach (var key in keys)
        {
            var c = key.IsDocumentId ? CompareIds(x.Id, y.Id)
                : JsonValues.SortCompare(First(x.Body, key.Path), First(y.Body, key.Path), VersionComparer.IsVersionField(key.Path));
            if (c != 0) return key.Direction == SortDirection.Desc ? -c : c;
        }
        return CompareIds(x.Id, y.Id);
    }

    /// <summary>Code-point order, which is SQLite's byte order of UTF-8 (ordinal UTF-16 differs past U+D7FF).</summary>
    public static int CompareIds(string a, string b)
    {
        var ea = a.EnumerateRunes();
        var eb = b.EnumerateRunes();
        while (true)
        {
            var more = ea.MoveNext();
            if (more != eb.MoveNext()) return more ? 1 : -1;
            if (!more) return 0;
            var c = ea.Current.Value.CompareTo(eb.Current.Value);
            if (c != 0) return c;
        }
    }

    public static JsonNode? First(JsonNode body, string path) => JsonPath.Resolve(body, path).FirstOrDefault();
}
