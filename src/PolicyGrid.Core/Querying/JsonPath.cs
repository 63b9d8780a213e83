using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Querying;

/// <summary>Dotted-path reading with Mongo's array traversal: <c>metadata.audience</c> walks into arrays.</summary>
public static class JsonPath
{
    /// <summary>
    /// Most segments a dotted path (in a filter, sort or update) may have: documents nest at most
    /// <see cref="Documents.DocumentDepth.MaxStored"/> levels, so a longer path reaches nothing.
    /// </summary>
    public const int MaxSegments = Documents.DocumentDepth.MaxStored;

    public static string[] Split(string path) => path.Split('.');

    /// <summary>A path short enough to quote in a message.</summary>
    public static string Abbreviate(string path) => path.Length <= 80 ? path : path[..77] + "...";

    /// <summary>
    /// The values a dotted path reaches. Arrays met on the way are traversed (each element is
    /// followed), and a numeric segment also indexes an array. Missing paths yield nothing.
    /// </summary>
    public static IEnumerable<JsonNode?> Resolve(JsonNode? node, string path) => Resolve(node, Split(path), 0);

    private static IEnumerable<JsonNode?> Resolve(JsonNode? node, string[] segments, int index)
    {
        if (index == segments.Length)
        {
            yield return node;
            yield break;
        }
        var segment = segments[index];
        switch (node)
        {
            case JsonObject obj:
                if (obj.TryGetPropertyValue(segment, out var child))
                    foreach (var v in Resolve(child, segments, index + 1)) yield return v;
                break;
            case JsonArray array:
                if (int.TryParse(segment, out var position) && position >= 0 && position < array.Count)
                    foreach (var v in Resolve(array[position], segments, index + 1)) yield return v;
                foreach (var element in array)
                    if (element is JsonObject)
                        foreach (var v in Resolve(element, segments, index)) yield return v;
                break;
        }
    }

    /// <summary>True when the path leads to a present property (even if its value is null).</summary>
    public static bool Exists(JsonNode? node, string path) => Resolve(node, path).Any();
}
