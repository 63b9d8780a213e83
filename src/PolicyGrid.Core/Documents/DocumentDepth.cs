using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Documents;

/// <summary>
/// How deep JSON may nest: request bodies (policy input too) at most <see cref="Max"/>; stored documents at most
/// <see cref="MaxStored"/> (they also carry what policies answered, e.g. a job's result, and updates can deepen
/// them: both stores and the update engine check); answers and worker replies are written and read up to <see cref="MaxWritten"/>, so anything stored, also
/// by an older version that had no such check, can always be read, queried and deleted.
/// </summary>
public static class DocumentDepth
{
    /// <summary>Most objects and arrays nested in one another (the outermost counts) in a request body.</summary>
    public const int Max = 32;

    /// <summary>
    /// The same for a stored document (stores read documents back with System.Text.Json's default limit of 64, Dapr's
    /// inside a wrapper object: this leaves room).
    /// </summary>
    public const int MaxStored = 48;

    /// <summary>The depth answers (and worker replies) may reach: <see cref="MaxStored"/> plus envelopes, with room to spare.</summary>
    public const int MaxWritten = 256;

    /// <summary>Throws a 400 naming where <paramref name="node"/> nests deeper than <paramref name="max"/> (paths below <paramref name="prefix"/>).</summary>
    public static void Ensure(JsonNode? node, int max, string prefix = "")
    {
        // Every stored write passes here: the common case walks without building a single path string.
        if (!Exceeds(node, 1, max) || FindTooDeep(node, prefix, 1, max) is not { } path) return;
        if (path.Length > 200) path = path[..200] + "…";
        throw Problems.Validation(path.Length == 0 ? "document" : path, $"nests deeper than {max} levels of objects and arrays");
    }

    private static bool Exceeds(JsonNode? node, int depth, int max) => node switch
    {
        JsonObject obj => depth > max || obj.Any(p => Exceeds(p.Value, depth + 1, max)),
        JsonArray array => depth > max || array.Any(item => Exceeds(item, depth + 1, max)),
        _ => false,
    };

    private static string? FindTooDeep(JsonNode? node, string path, int depth, int max)
    {
        switch (node)
        {
            case JsonObject obj:
                if (depth > max) return path;
                foreach (var (key, value) in obj)
                    if (FindTooDeep(value, path.Length == 0 ? key : $"{path}.{key}", depth + 1, max) is { } found) return found;
                return null;
            case JsonArray array:
                if (depth > max) return path;
                for (var i = 0; i < array.Count; i++)
                    if (FindTooDeep(array[i], $"{path}[{i}]", depth + 1, max) is { } found) return found;
                return null;
            default:
                return null;
        }
    }
}
