using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Unicode;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// Finds the first JSON string (value or property name) that cannot become a .NET string: raw bytes
/// that are not UTF-8, or a <c>\uD800</c>-style escape without its partner surrogate. System.Text.Json
/// accepts both while parsing and fails only when the string is first read, deep in whatever handler
/// touches it; checking the parsed tree once here turns that into a 400 naming where the string sits.
/// The walk reads the raw UTF-8 of each string and decodes only strings that hold escapes, so a valid
/// body costs one allocation-free pass.
/// The same walk refuses a number beyond a double's range (<c>1e400</c>): parsed, it is infinity, which reaches
/// Python as <c>inf</c> (and the policy is blamed for answering it back), and stored, it compares wrongly in filters.
/// </summary>
public static class JsonStringCheck
{
    /// <summary>Throws a 400 naming the first string of <paramref name="root"/> that is not valid text.</summary>
    public static void Require(JsonElement root, string what)
    {
        if (Find(root) is { } bad) throw Problems.BadRequest($"{what} is not valid: {bad.Describe()}");
    }

    private static BadString? Find(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                return Problem(JsonMarshal.GetRawUtf8Value(element), element, default) is { } p ? new BadString(p, IsName: false) : null;
            case JsonValueKind.Number:
                // JSON has no infinity: a number that parses to one is past a double's range.
                return element.TryGetDouble(out var number) && double.IsFinite(number) ? null : new BadString(OutOfRange(element), IsName: false, Kind: "number");
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    if (Problem(JsonMarshal.GetRawUtf8PropertyName(property), default, property) is { } nameProblem) return new BadString(nameProblem, IsName: true);
                    if (Find(property.Value) is { } inner) return inner.Under(Member(property.Name));
                }
                return null;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    if (Find(item) is { } inner) return inner.Under($"[{index}]");
                    index++;
                }
                return null;
            default:
                return null;
        }
    }

    /// <summary>
    /// What is wrong with one string (a value, or else a property's name), given its raw, still escaped
    /// UTF-8; null when nothing is.
    /// </summary>
    private static string? Problem(ReadOnlySpan<byte> raw, JsonElement value, JsonProperty name)
    {
        if (!Utf8.IsValid(raw)) return "is not valid UTF-8";
        if (raw.IndexOf((byte)'\\') < 0) return null;
        // The parser has already checked the escape syntax; what remains to fail is surrogate pairing.
        try
        {
            _ = value.ValueKind == JsonValueKind.String ? value.GetString() : name.Name;
            return null;
        }
        catch (InvalidOperationException)
        {
            return "holds a lone surrogate escape (\\uD800-\\uDFFF without its pair)";
        }
    }

    private static string OutOfRange(JsonElement number)
    {
        var text = number.GetRawText();
        return $"is out of range ({(text.Length <= 40 ? text : text[..37] + "...")}): a number must lie within ±{double.MaxValue.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
    }

    private static string Member(string name) =>
        name.Length > 0 && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_') ? "." + name : "[" + JsonSerializer.Serialize(name) + "]";

    private sealed record BadString(string Problem, bool IsName, string Path = "", string Kind = "string")
    {
        public BadString Under(string segment) => this with { Path = segment + Path };

        public string Describe() => IsName
            ? $"a property name in ${Path} {Problem}"
            : $"the {Kind} at ${Path} {Problem}";
    }
}
