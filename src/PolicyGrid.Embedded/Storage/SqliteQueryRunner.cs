using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Embedded.Storage;

/// <summary>Runs a <see cref="DocumentQuery"/> against one collection table.</summary>
internal sealed class SqliteQueryRunner
{
    private readonly SqliteDatabase _db;

    public SqliteQueryRunner(SqliteDatabase db) => _db = db;

    public IReadOnlyList<StoredDocument> Run(SqliteConnection connection, string table, DocumentQuery query, CancellationToken ct)
    {
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT id, body, revision FROM \"{table}\" ORDER BY id";
        var matches = new List<StoredDocument>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            ct.ThrowIfCancellationRequested();
            var body = JsonNode.Parse(reader.GetString(1))!.AsObject();
            if (query.Filter.Matches(body))
                matches.Add(new StoredDocument(reader.GetString(0), body, SqliteDocumentStore.Etag(reader.GetInt64(2))));
        }
        if (query.Sort.Count > 0) matches.Sort(new DocumentOrder(query.Sort).Compare);
        return matches.Skip(query.Skip).Take(query.Limit).ToList();
    }
}

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
            var c = JsonValues.SortCompare(First(x.Body, key.Path), First(y.Body, key.Path), VersionComparer.IsVersionField(key.Path));
            if (c != 0) return key.Direction == SortDirection.Desc ? -c : c;
        }
        return string.CompareOrdinal(x.Id, y.Id);
    }

    public static JsonNode? First(JsonNode body, string path) => JsonPath.Resolve(body, path).FirstOrDefault();
}
