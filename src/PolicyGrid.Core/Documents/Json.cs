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
        MaxDepth = DocumentDepth.MaxWritten,
    };
}
