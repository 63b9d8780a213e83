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
/// The key scheme: a document lives at <c>{collection}/{id}</c>, a collection's index at <c>__keyindex/{collection}</c>,
/// which no document key can equal because no collection is named __keyindex.
/// <para>
/// daprd refuses every state key holding <c>||</c> (its own key-prefix separator) with InvalidArgument
/// (dapr/dapr pkg/components/state/state_config.go, checkKeyIllegal, v1.18.3), so neither the separator nor an id may
/// put one in a key: each <c>|</c> of an id is written <c>%7C</c> and each <c>%</c> <c>%25</c>, which keeps keys of
/// different ids apart. No collection name holds a <c>/</c>.
/// </para>
/// </summary>
public static class StateKeys
{
    public const string Separator = "/";
    public const string IndexPrefix = "__keyindex";

    public static string Document(string collection, string id) => collection + Separator + Escape(id);

    public static string Index(string collection) => IndexPrefix + Separator + collection;

    /// <summary>An id or key as a part of a state key daprd accepts: no <c>|</c> left, and no two inputs alike.</summary>
    public static string Escape(string part) =>
        part.Contains('|') || part.Contains('%') ? part.Replace("%", "%25", StringComparison.Ordinal).Replace("|", "%7C", StringComparison.Ordinal) : part;
}

/// <summary>
/// A value as MongoDB's <c>$literal</c> expression holds it: state.mongodb's pipeline update stores <see cref="Value"/>
/// unparsed (see DaprStateDocumentStore), so what is read back is the value itself, never this wrapper.
/// </summary>
public sealed record MongoLiteral<T>([property: JsonPropertyName("$literal")] T Value);

