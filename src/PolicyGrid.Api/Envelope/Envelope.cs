using System.Text.Json.Serialization;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// The contract's success body: <c>{"success": true, "data": ...}</c>, and <c>"warnings": [...]</c> (an addition) when
/// the request succeeded but something in it will not work yet, e.g. a graph naming functions not deployed.
/// </summary>
public sealed record Envelope<T>(T Data)
{
    [JsonPropertyOrder(-1)]
    public bool Success => true;

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Warnings { get; init; }
}

/// <summary>The contract's failure body: <c>{"success": false, "message", "code", "errors"?}</c>.</summary>
public sealed record ErrorEnvelope(string Message, string Code, [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<FieldError>? Errors = null)
{
    [JsonPropertyOrder(-1)]
    public bool Success => false;

    public static ErrorEnvelope From(PolicyGridException e) => new(e.Message, e.Code, e.Errors.Count > 0 ? e.Errors : null);
}
