using System.Text.Json.Serialization;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Envelope;

/// <summary>The contract's success body: <c>{"success": true, "data": ...}</c>.</summary>
public sealed record Envelope<T>(T Data)
{
    [JsonPropertyOrder(-1)]
    public bool Success => true;
}

/// <summary>The contract's failure body: <c>{"success": false, "message", "code", "errors"?}</c>.</summary>
public sealed record ErrorEnvelope(string Message, string Code, [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<FieldError>? Errors = null)
{
    [JsonPropertyOrder(-1)]
    public bool Success => false;

    public static ErrorEnvelope From(PolicyGridException e) => new(e.Message, e.Code, e.Errors.Count > 0 ? e.Errors : null);
}
