using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Documents;

/// <summary>
/// Reads the fields of one incoming document, collecting every problem (rather than stopping at
/// the first) so a caller learns about all bad fields in one answer. A JSON null counts as
/// "not given": optional fields then take their default, required ones are reported missing.
/// Values are deep-cloned so the document never shares nodes with the caller's body.
/// </summary>
internal sealed class DocumentFields(JsonObject body, string prefix = "")
{
    public List<FieldError> Errors { get; } = [];

    public string PathOf(string name) => prefix.Length == 0 ? name : $"{prefix}.{name}";

    public void Add(string name, string message) => Errors.Add(new FieldError(PathOf(name), message));

    public void AddRange(IEnumerable<FieldError> errors) => Errors.AddRange(errors);

    private JsonNode? Given(string name) =>
        body.TryGetPropertyValue(name, out var node) && !IsNull(node) ? node : null;

    public bool Has(string name) => Given(name) is not null;

    public static bool IsNull(JsonNode? node) => node is null || (node is JsonValue v && v.GetValueKind() == JsonValueKind.Null);

    public string RequiredString(string name)
    {
        var node = Given(name);
        if (node is null) { Add(name, "is required"); return ""; }
        if (!JsonValues.TryString(node, out var s)) { Add(name, $"must be a string, not {JsonValues.Describe(node)}"); return ""; }
        if (s.Length == 0) Add(name, "must not be empty");
        return s;
    }

    public string String(string name, string fallback = "")
    {
        var node = Given(name);
        if (node is null) return fallback;
        if (JsonValues.TryString(node, out var s)) return s;
        Add(name, $"must be a string, not {JsonValues.Describe(node)}");
        return fallback;
    }

    /// <summary>A string that must be one of <paramref name="allowed"/>; empty or missing takes the default.</summary>
    public string Choice(string name, string fallback, IReadOnlyList<string> allowed)
    {
        var value = String(name, fallback);
        if (value.Length == 0) return fallback;
        if (!allowed.Contains(value, StringComparer.Ordinal))
        {
            Add(name, $"'{value}' is not one of {string.Join(", ", allowed.Select(a => $"\"{a}\""))}");
            return fallback;
        }
        return value;
    }

    /// <summary>An ISO-8601 timestamp string; empty when unset.</summary>
    public string Timestamp(string name)
    {
        var value = String(name);
        if (value.Length > 0 && !DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out _))
            Add(name, $"'{value}' is not an ISO-8601 timestamp");
        return value;
    }

    public JsonObject Object(string name)
    {
        var node = Given(name);
        if (node is null) return [];
        if (node is JsonObject o) return (JsonObject)o.DeepClone();
        Add(name, $"must be an object, not {JsonValues.Describe(node)}");
        return [];
    }

    public JsonArray Array(string name)
    {
        var node = Given(name);
        if (node is null) return [];
        if (node is JsonArray a) return (JsonArray)a.DeepClone();
        Add(name, $"must be an array, not {JsonValues.Describe(node)}");
        return [];
    }

    public IReadOnlyList<string> StringList(string name)
    {
        var node = Given(name);
        if (node is null) return [];
        if (node is not JsonArray a) { Add(name, $"must be an array of strings, not {JsonValues.Describe(node)}"); return []; }
        var result = new List<string>(a.Count);
        for (var i = 0; i < a.Count; i++)
        {
            if (JsonValues.TryString(a[i], out var s)) result.Add(s);
            else Errors.Add(new FieldError($"{PathOf(name)}[{i}]", $"must be a string, not {JsonValues.Describe(a[i])}"));
        }
        return result;
    }

    /// <summary>Any JSON value (object, array, scalar); missing or null takes the default.</summary>
    public JsonNode AnyValue(string name, Func<JsonNode> fallback) => Given(name)?.DeepClone() ?? fallback();

    public long Integer(string name, long fallback, long min = long.MinValue, long max = long.MaxValue)
    {
        var node = Given(name);
        if (node is null) return fallback;
        if (JsonValues.IsBeyond(node, long.MinValue, long.MaxValue))
        {
            // 1e20 is an integer, just not one that fits: say so, with the range, rather than "must be an integer".
            Add(name, $"is out of range: must be an integer from {min} to {max}, not {node.ToJsonString()}");
            return fallback;
        }
        if (!JsonValues.TryPreciseDecimal(node, out var n) || n != decimal.Truncate(n) || n < long.MinValue || n > long.MaxValue)
        {
            Add(name, $"must be an integer, not {JsonValues.Describe(node)}");
            return fallback;
        }
        var value = (long)n;
        if (value < min) Add(name, $"must be at least {min}, not {value}");
        if (value > max) Add(name, $"must be at most {max}, not {value}");
        return value;
    }

    public double Number(string name, double fallback, double exclusiveMin = double.NegativeInfinity)
    {
        var node = Given(name);
        if (node is null) return fallback;
        // As a double: 1e-30 is not 0 here, nor 1e30 "not a number" (decimal reads the one as 0 and refuses the other).
        if (!JsonValues.TryDouble(node, out var value)) { Add(name, $"must be a number, not {JsonValues.Describe(node)}"); return fallback; }
        if (value <= exclusiveMin) Add(name, $"must be greater than {exclusiveMin.ToString(CultureInfo.InvariantCulture)}, not {value.ToString(CultureInfo.InvariantCulture)}");
        return value;
    }

    public bool Boolean(string name, bool fallback)
    {
        var node = Given(name);
        if (node is null) return fallback;
        if (node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return v.GetValue<bool>();
        Add(name, $"must be true or false, not {JsonValues.Describe(node)}");
        return fallback;
    }

    /// <summary>An identifier used in URLs: non-empty, and what <see cref="Identity.Identifiers"/> allows.</summary>
    public string RequiredId(string name)
    {
        var value = RequiredString(name);
        if (value.Length == 0) return value;
        var problems = new List<FieldError>();
        Identity.Identifiers.Check(problems, name, value);
        foreach (var problem in problems) Add(problem.Path, problem.Message);
        return value;
    }

    public void ThrowIfInvalid()
    {
        if (Errors.Count > 0) throw Problems.Validation(Errors);
    }

    internal static JsonArray ToArray(IEnumerable<string> items) => new(items.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray());
}
