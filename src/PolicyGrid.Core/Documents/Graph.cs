using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Documents;

/// <summary>
/// A Type 5 graph: a DAG of deployed functions with one sink. Its shape is checked by
/// <see cref="GraphPlan"/> when the document is built, so a bad graph never gets stored.
/// </summary>
public sealed record Graph : IDocument<Graph>
{
    public static string Collection => Ports.Collections.Graphs;

    public static IReadOnlySet<string> IdentityFields { get; } = new HashSet<string>(StringComparer.Ordinal)
        { "graph_uri", "graph_name", "graph_version", "graph_release_tag" };

    public string GraphUri { get; init; } = "";

    public string Id => GraphUri;

    public string GraphName { get; init; } = "";
    public string GraphVersion { get; init; } = "";
    public string GraphReleaseTag { get; init; } = "";
    public JsonObject GraphMetadata { get; init; } = [];
    public IReadOnlyList<string> GraphFunctionIds { get; init; } = [];
    /// <summary>Node → its children, as given (nodes without children may be absent or map to []).</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> GraphConnectionData { get; init; } = new Dictionary<string, IReadOnlyList<string>>();
    public IReadOnlyList<string> GraphSearchTags { get; init; } = [];
    public string GraphDescription { get; init; } = "";
    public JsonObject GraphInputSchema { get; init; } = [];
    public JsonObject GraphOutputSchema { get; init; } = [];

    public PolicyUri Uri => new(GraphName, GraphVersion, GraphReleaseTag);

    /// <summary>The execution plan (levels, parents in order, roots, sink). Valid by construction.</summary>
    public GraphPlan Plan() => GraphPlan.Build(GraphFunctionIds, GraphConnectionData);

    /// <summary>
    /// Validates a create body or updated document: required graph_name, graph_version,
    /// graph_release_tag, graph_function_ids; graph_uri derived (a disagreeing one is a 400 naming
    /// it); the connections form a DAG with one sink.
    /// </summary>
    public static Graph FromJson(JsonObject body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var f = new DocumentFields(body);
        var name = f.RequiredString("graph_name");
        var version = f.RequiredString("graph_version");
        var tag = f.RequiredString("graph_release_tag");
        var uri = PolicyRule.DeriveUri(f, name, version, tag, f.String("graph_uri"), "graph_uri", "graph_name", "graph_version", "graph_release_tag");
        if (!f.Has("graph_function_ids")) f.Add("graph_function_ids", "is required");
        var ids = f.StringList("graph_function_ids");
        // Each id names a function (or a policy) deployed under that name, so it obeys the same identifier rules.
        var idErrors = new List<FieldError>();
        for (var i = 0; i < ids.Count; i++)
            if (ids[i].Length > 0) Identifiers.Check(idErrors, $"graph_function_ids[{i}]", ids[i]);
        f.AddRange(idErrors);
        var connections = ReadConnections(f);

        var graph = new Graph
        {
            GraphUri = uri,
            GraphName = name,
            GraphVersion = version,
            GraphReleaseTag = tag,
            GraphMetadata = f.Object("graph_metadata"),
            GraphFunctionIds = ids,
            GraphConnectionData = connections,
            GraphSearchTags = f.StringList("graph_search_tags"),
            GraphDescription = f.String("graph_description"),
            GraphInputSchema = PolicyRule.Template(f, "graph_input_schema"),
            GraphOutputSchema = PolicyRule.Template(f, "graph_output_schema"),
        };
        if (!f.Errors.Any(e => e.Path.StartsWith("graph_function_ids", StringComparison.Ordinal) || e.Path.StartsWith("graph_connection_data", StringComparison.Ordinal)))
        {
            try { GraphPlan.Build(ids, connections); }
            catch (PolicyGridException e) { f.AddRange(e.Errors); }
        }
        f.ThrowIfInvalid();
        return graph;
    }

    private static Dictionary<string, IReadOnlyList<string>> ReadConnections(DocumentFields f)
    {
        var given = f.Object("graph_connection_data");
        var result = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        foreach (var (node, childrenNode) in given)
        {
            var path = $"graph_connection_data.{node}";
            if (DocumentFields.IsNull(childrenNode)) { result[node] = []; continue; }
            if (childrenNode is not JsonArray children)
            {
                f.Errors.Add(new FieldError(path, $"must be a list of child function ids, not {JsonValues.Describe(childrenNode)}"));
                continue;
            }
            var list = new List<string>();
            for (var i = 0; i < children.Count; i++)
            {
                if (JsonValues.TryString(children[i], out var child)) list.Add(child);
                else f.Errors.Add(new FieldError($"{path}[{i}]", $"must be a function id string, not {JsonValues.Describe(children[i])}"));
            }
            result[node] = list;
        }
        return result;
    }

    public JsonObject ToJson()
    {
        var connections = new JsonObject();
        foreach (var (node, children) in GraphConnectionData)
            connections[node] = DocumentFields.ToArray(children);
        return new JsonObject
        {
            ["graph_uri"] = GraphUri,
            ["graph_name"] = GraphName,
            ["graph_version"] = GraphVersion,
            ["graph_release_tag"] = GraphReleaseTag,
            ["graph_metadata"] = GraphMetadata.DeepClone(),
            ["graph_function_ids"] = DocumentFields.ToArray(GraphFunctionIds),
            ["graph_connection_data"] = connections,
            ["graph_search_tags"] = DocumentFields.ToArray(GraphSearchTags),
            ["graph_description"] = GraphDescription,
            ["graph_input_schema"] = GraphInputSchema.DeepClone(),
            ["graph_output_schema"] = GraphOutputSchema.DeepClone(),
        };
    }
}
