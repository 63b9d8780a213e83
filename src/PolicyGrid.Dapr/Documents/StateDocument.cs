using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace PolicyGrid.Dapr.Documents;

/// <summary>
/// What one state entry of the document store holds. The collection is stored beside the document
/// so that a query over the whole store can select one collection; the revision is ours (a fresh
/// token per write) so that API ETags do not depend on how each store spells its own etags.
/// Names are fixed here so the SDK's serializer settings cannot change the stored shape.
/// </summary>
public sealed record StateDocument(
    [property: JsonPropertyName("collection")] string Collection,
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("revision")] string Revision,
    [property: JsonPropertyName("doc")] JsonObject Doc)
{
    /// <summary>The prefix of document paths inside a stored entry, as the query API sees them.</summary>
    public const string DocPath = "doc";
}

/// <summary>The ids of one collection, kept for stores without the query API.</summary>
public sealed record KeyIndex([property: JsonPropertyName("ids")] List<string> Ids);

/// <summary>
/// The key scheme: a document lives at <c>{collection}||{id}</c> (the separator Dapr itself uses for
/// its key prefixes, and one no collection name contains); a collection's index at
/// <c>__keyindex||{collection}</c>, which no document key can equal because no collection is named __keyindex.
/// </summary>
public static class StateKeys
{
    public const string Separator = "||";
    public const string IndexPrefix = "__keyindex";

    public static string Document(string collection, string id) => collection + Separator + id;

    public static string Index(string collection) => IndexPrefix + Separator + collection;
}
