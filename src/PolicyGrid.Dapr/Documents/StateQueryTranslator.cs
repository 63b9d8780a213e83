using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Dapr.Documents;

/// <summary>
/// The part of a query that Dapr's state query API can run, as that API's JSON: EQ and IN on
/// scalar values, AND and OR, and sort keys. Everything else ($ne, ranges, $regex, $exists,
/// arrays, nulls, numbers beyond decimal's range or below 1e-12, version ordering) stays with the
/// adapter, which applies Core's <see cref="FilterNode.Matches"/> to every result anyway, so pushing
/// less down is only slower, never wrong.
/// The tree is translated value by value; no filter text ever reaches the store.
/// </summary>
public static class StateQueryTranslator
{
    /// <summary>The store-side filter for one collection (always restricted to that collection).</summary>
    public static JsonObject Filter(string collection, FilterNode filter)
    {
        var byCollection = new JsonObject { ["EQ"] = new JsonObject { ["collection"] = collection } };
        var translated = Translate(filter);
        return translated is null ? byCollection : new JsonObject { ["AND"] = new JsonArray(byCollection, translated) };
    }

    /// <summary>The store-side sort, or null when a key must be ordered by us (version fields compare as versions).</summary>
    public static JsonArray? Sort(IReadOnlyList<SortKey> sort)
    {
        if (sort.Any(k => VersionComparer.IsVersionField(k.Path))) return null;
        var keys = new JsonArray(sort.Select(k => (JsonNode)new JsonObject
        {
            // The entry's id sits beside the document in the stored value (see the trim queries).
            ["key"] = k.IsDocumentId ? "id" : DocPath(k.Path),
            ["order"] = k.Direction == SortDirection.Desc ? "DESC" : "ASC",
        }).ToArray());
        // Ties (and an unsorted query) in id order, as the embedded store answers them: the store pages with a token
        // over its own order, and on a key many documents share (status, name) that order was not fixed, so ?skip=
        // paging could answer a document twice and another never.
        if (!sort.Any(k => k.IsDocumentId)) keys.Add(new JsonObject { ["key"] = "id", ["order"] = "ASC" });
        return keys;
    }

    /// <summary>The complete query JSON for one page.</summary>
    public static string Query(string collection, FilterNode filter, JsonArray? sort, int pageSize, string? token)
    {
        var query = new JsonObject { ["filter"] = Filter(collection, filter) };
        if (sort is { Count: > 0 }) query["sort"] = sort.DeepClone();
        var page = new JsonObject { ["limit"] = pageSize };
        if (!string.IsNullOrEmpty(token)) page["token"] = token;
        query["page"] = page;
        return query.ToJsonString();
    }

    /// <summary>Translates a node, or null when the store cannot express it (the adapter then filters it locally).</summary>
    public static JsonObject? Translate(FilterNode node) => node switch
    {
        AndFilter and => Combine("AND", and.Children.Select(Translate).Where(t => t is not null).ToList()!),
        // An OR is only pushed down whole: dropping one branch would lose documents that only it matches.
        OrFilter or => or.Children.Select(Translate).ToList() is var parts && parts.All(p => p is not null) && parts.Count > 0
            ? Combine("OR", parts!)
            : null,
        FieldFilter { Operator: FieldOperator.Eq } eq when IsScalar(eq.Operand) =>
            new JsonObject { ["EQ"] = new JsonObject { [DocPath(eq.Path)] = eq.Operand!.DeepClone() } },
        FieldFilter { Operator: FieldOperator.In, Operand: JsonArray values } when values.Count > 0 && values.All(IsScalar) =>
            new JsonObject { ["IN"] = new JsonObject { [DocPath(((FieldFilter)node).Path)] = values.DeepClone() } },
        _ => null,
    };

    private static JsonObject? Combine(string op, List<JsonObject> parts) => parts.Count switch
    {
        0 => null,
        1 => parts[0],
        _ => new JsonObject { [op] = new JsonArray(parts.Select(p => (JsonNode)p).ToArray()) },
    };

    private static string DocPath(string path) => StateDocument.DocPath + "." + path;

    /// <summary>
    /// Strings, numbers and booleans: the values whose equality the query API and Mongo agree on. A number beyond
    /// decimal's range (±7.9e28) or smaller than 1e-12 and not zero Core compares as a double, which a store need not
    /// do (it may compare such numbers as text or exact decimals and miss a match: 1e-30 and 1.0000000000000001e-30
    /// are one double), so a condition holding one stays with Core. So does an integer past ±2^53: the sidecar reads the
    /// query's JSON numbers as doubles (Go's float64), so 9007199254740993 would reach the store as ...992 and miss the
    /// document holding it.
    /// </summary>
    private static bool IsScalar(JsonNode? node) =>
        node is JsonValue v && (v.GetValueKind() is JsonValueKind.String or JsonValueKind.True or JsonValueKind.False
            || (JsonValues.TryPreciseDecimal(v, out var n) && Math.Abs(n) <= MaxExactDouble));

    /// <summary>2^53: every integer up to it is exactly a double.</summary>
    private const decimal MaxExactDouble = 9_007_199_254_740_992m;
}
