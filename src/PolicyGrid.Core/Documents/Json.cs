using System.Text.Json;
using System.Text.Json.Serialization;

namespace PolicyGrid.Core.Documents;

/// <summary>The one JSON convention of the contract: snake_case names, nothing omitted.</summary>
public static class Json
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = null,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        WriteIndented = false,
    };

    /// <summary>
    /// How deeply a document or request body may nest: request bodies are parsed with this limit and
    /// stores read documents back with System.Text.Json's default, which is the same 64, so nothing
    /// deeper may be stored (it could never be read again).
    /// </summary>
    public const int MaxDepth = 64;

    /// <summary>The nesting depth of a value: 0 for a scalar, 1 for an object or array of scalars.</summary>
    public static int Depth(System.Text.Json.Nodes.JsonNode? node) => node switch
    {
        System.Text.Json.Nodes.JsonObject o => 1 + o.Select(p => Depth(p.Value)).DefaultIfEmpty(0).Max(),
        System.Text.Json.Nodes.JsonArray a => 1 + a.Select(Depth).DefaultIfEmpty(0).Max(),
        _ => 0,
    };
}
