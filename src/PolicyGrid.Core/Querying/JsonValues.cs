using System.Text.Json;
using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Querying;

/// <summary>Equality and ordering of JSON values as Mongo compares them (numbers by value, then strings, booleans).</summary>
public static class JsonValues
{
    public static bool DeepEquals(JsonNode? a, JsonNode? b)
    {
        if (a is null || b is null) return a is null && b is null;
        if (CompareNumbers(a, b) is { } order) return order == 0;
        // Recurse by hand so numbers nested in objects and arrays also compare by value (1 == 1.0).
        return (a, b) switch
        {
            (JsonObject oa, JsonObject ob) => oa.Count == ob.Count
                && oa.All(p => ob.TryGetPropertyValue(p.Key, out var other) && DeepEquals(p.Value, other)),
            (JsonArray aa, JsonArray ab) => aa.Count == ab.Count && aa.Zip(ab).All(p => DeepEquals(p.First, p.Second)),
            _ => JsonNode.DeepEquals(a, b),
        };
    }

    public static bool TryNumber(JsonNode? node, out decimal value)
    {
        value = 0;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
        {
            if (v.TryGetValue<decimal>(out value)) return true;
            if (v.TryGetValue<double>(out var d) && !double.IsNaN(d) && Math.Abs(d) < 7.9e28) { value = (decimal)d; return true; }
            try { value = decimal.Parse(v.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture); return true; }
            catch (FormatException) { return false; }
            catch (OverflowException) { return false; }
        }
        return false;
    }

    /// <summary>
    /// Any finite JSON number as a double, also one beyond decimal's range (±7.9e28) that <see cref="TryNumber"/> refuses:
    /// JSON allows such numbers and Python reads them, so checks that must hold for every number use this.
    /// </summary>
    /// <summary>
    /// Whether <paramref name="node"/> is a JSON number past <paramref name="min"/>..<paramref name="max"/> (1e20, or
    /// 1e400, which no double holds): a number too large for an integer field, as opposed to one that is not an integer.
    /// </summary>
    public static bool IsBeyond(JsonNode? node, decimal min, decimal max)
    {
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) return false;
        if (TryNumber(node, out var n)) return n > max || n < min;
        // Past ±7.9e28 no decimal holds it (past ±1.8e308 no double either): the JSON text says which way, and a
        // number that far out is beyond any range a decimal can name.
        return double.TryParse(v.ToJsonString(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var d)
            && Math.Abs(d) >= 7.9e28;
    }

    public static bool TryDouble(JsonNode? node, out double value)
    {
        value = 0;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) return false;
        // A value built in code from an int, a long or a decimal is no double to TryGetValue: read its JSON text.
        if (!v.TryGetValue(out value)
            && !double.TryParse(v.ToJsonString(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out value))
            return false;
        return double.IsFinite(value);
    }

    /// <summary>A finite JSON number of any size (<see cref="TryDouble"/>).</summary>
    public static bool IsNumber(JsonNode? node) => TryDouble(node, out _);

    /// <summary>
    /// Below this size a decimal's 28 places keep fewer significant digits than a double (1.4e-28 reads as 1e-28,
    /// 1e-30 as 0); from it up they keep at least 16, as many as a double tells apart.
    /// </summary>
    private const decimal SmallestPreciseDecimal = 0.000000000001m;

    /// <summary>
    /// The number as a decimal where the decimal is at least as precise as the number's double: zero, or at least
    /// 1e-12 in size (and within decimal's range, ±7.9e28). Refused for any other number, such as 1e-30, which
    /// <see cref="TryNumber"/> reads as 0.
    /// </summary>
    public static bool TryPreciseDecimal(JsonNode? node, out decimal value)
    {
        if (!TryNumber(node, out value)) return false;
        if (Math.Abs(value) >= SmallestPreciseDecimal) return true;
        return value == 0 && TryDouble(node, out var d) && d == 0;
    }

    /// <summary>
    /// Orders two JSON numbers of any size: exactly, as decimals, when both are precise decimals
    /// (<see cref="TryPreciseDecimal"/>); as doubles otherwise, when either lies beyond ±7.9e28 (far from any
    /// number that fits) or is smaller than 1e-12 yet not zero (where a double keeps more digits than a decimal).
    /// Null when either is not a finite number.
    /// </summary>
    public static int? CompareNumbers(JsonNode? a, JsonNode? b)
    {
        if (TryPreciseDecimal(a, out var x) && TryPreciseDecimal(b, out var y)) return x.CompareTo(y);
        return TryDouble(a, out var p) && TryDouble(b, out var q) ? p.CompareTo(q) : null;
    }

    public static bool TryString(JsonNode? node, out string value)
    {
        value = "";
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.String) return false;
        // Values built in code (a Guid, a DateTimeOffset) are strings in JSON but not string-typed nodes.
        value = v.TryGetValue<string>(out var s) ? s : JsonSerializer.Deserialize<string>(v.ToJsonString()) ?? "";
        return true;
    }

    /// <summary>
    /// Ordering for $gt/$lt and sorting: only like with like (number/number, string/string); null otherwise.
    /// Numbers of any size order by value (<see cref="CompareNumbers"/>).
    /// </summary>
    public static int? Compare(JsonNode? a, JsonNode? b, bool asVersion)
    {
        if (CompareNumbers(a, b) is { } order) return order;
        if (TryString(a, out var s) && TryString(b, out var t))
            return asVersion ? VersionComparer.Instance.Compare(s, t) : string.CompareOrdinal(s, t);
        if (a is JsonValue av && b is JsonValue bv && av.GetValueKind() is JsonValueKind.True or JsonValueKind.False
            && bv.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
            return av.GetValue<bool>().CompareTo(bv.GetValue<bool>());
        return null;
    }

    /// <summary>A total order for sorting mixed values: missing/null &lt; numbers &lt; strings &lt; objects &lt; arrays &lt; booleans.</summary>
    public static int SortCompare(JsonNode? a, JsonNode? b, bool asVersion)
    {
        var ra = Rank(a);
        var rb = Rank(b);
        if (ra != rb) return ra.CompareTo(rb);
        return Compare(a, b, asVersion) ?? string.CompareOrdinal(a?.ToJsonString(), b?.ToJsonString());
    }

    private static int Rank(JsonNode? n) => n switch
    {
        null => 0,
        JsonValue v when v.GetValueKind() == JsonValueKind.Null => 0,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => 1,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => 2,
        JsonObject => 3,
        JsonArray => 4,
        _ => 5,
    };

    /// <summary>A JSON value's kind as error messages name it ("a string", "an array", "null").</summary>
    public static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "an array",
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            JsonValueKind.Null => "null",
            _ => "a value",
        },
        _ => "a value",
    };
}
