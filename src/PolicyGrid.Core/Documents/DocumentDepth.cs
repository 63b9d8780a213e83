using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Documents;

/// <summary>
/// How deep JSON may nest where the API takes it in: request bodies (policy input too) and every stored document,
/// after updates. Answers are written with a far higher limit (<see cref="MaxWritten"/>), so anything stored, also
/// by an older version that had no such check, can always be read, queried and deleted.
/// </summary>
public static class DocumentDepth
{
    /// <summary>Most objects and arrays nested in one another (the outermost counts) in a body or stored document.</summary>
    public const int Max = 32;

    /// <summary>The depth answers (and worker replies) may reach: <see cref="Max"/> plus envelopes, with room to spare.</summary>
    public const int MaxWritten = 256;

    /// <summary>Throws a 400 naming where <paramref name="node"/> nests deeper than <see cref="Max"/> (paths below <paramref name="prefix"/>).</summary>
    public static void Ensure(JsonNode? node, string prefix = "")
    {
        if (FindTooDeep(node, prefix, 1) is not { } path) return;
        if (path.Length > 200) path = path[..200] + "…";
        throw Problems.Validation(path.Length == 0 ? "document" : path, $"nests deeper than {Max} levels of objects and arrays");
    }

    private static string? FindTooDeep(JsonNode? node, string path, int depth)
    {
        switch (node)
        {
            case JsonObject obj:
                if (depth > Max) return path;
                foreach (var (key, value) in obj)
                    if (FindTooDeep(value, path.Length == 0 ? key : $"{path}.{key}", depth + 1) is { } found) return found;
                return null;
            case JsonArray array:
                if (depth > Max) return path;
                for (var i = 0; i < array.Count; i++)
                    if (FindTooDeep(array[i], $"{path}[{i}]", depth + 1) is { } found) return found;
                return null;
            default:
                return null;
        }
    }
}
