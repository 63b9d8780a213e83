using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Querying;

/// <summary>Evaluates one <see cref="FieldFilter"/> against a document with Mongo's semantics.</summary>
public static class FieldMatcher
{
    /// <summary>Bounds the time a caller's pattern may spend on one value (catastrophic backtracking).</summary>
    public static readonly TimeSpan RegexTimeout = TimeSpan.FromMilliseconds(250);

    /// <summary>Compiled <c>$regex</c> patterns, bounded.</summary>
    public static readonly RegexCache Patterns = new(1000, RegexTimeout);

    public static bool Matches(FieldFilter f, JsonNode? document) => Matches(f, document, FilterBudget.Unlimited);

    public static bool Matches(FieldFilter f, JsonNode? document, FilterBudget budget)
    {
        ArgumentNullException.ThrowIfNull(f);
        ArgumentNullException.ThrowIfNull(budget);
        budget.Check();
        var values = f.Path.Length == 0 ? [document] : JsonPath.Resolve(document, f.Path).ToList();
        var asVersion = VersionComparer.IsVersionField(f.Path);
        switch (f.Operator)
        {
            case FieldOperator.Eq: return EqualsAny(values, f.Operand);
            case FieldOperator.Ne: return !EqualsAny(values, f.Operand);
            case FieldOperator.In: return ((JsonArray)f.Operand!).Any(o => EqualsAny(values, o) || (o is JsonObject ro && ro.ContainsKey("$regex") && RegexAny(values, ro, budget)));
            case FieldOperator.Nin: return !((JsonArray)f.Operand!).Any(o => EqualsAny(values, o) || (o is JsonObject ro && ro.ContainsKey("$regex") && RegexAny(values, ro, budget)));
            case FieldOperator.Gt: return CompareAny(values, f.Operand, asVersion, c => c > 0);
            case FieldOperator.Gte: return CompareAny(values, f.Operand, asVersion, c => c >= 0);
            case FieldOperator.Lt: return CompareAny(values, f.Operand, asVersion, c => c < 0);
            case FieldOperator.Lte: return CompareAny(values, f.Operand, asVersion, c => c <= 0);
            case FieldOperator.Exists: return (values.Count > 0) == f.Operand!.GetValue<bool>();
            case FieldOperator.Regex:
                var regex = Compile(f.Operand!.GetValue<string>(), f.RegexOptions);
                return Flatten(values).Any(v => JsonValues.TryString(v, out var s) && IsMatch(regex, s, budget));
            case FieldOperator.Size:
                return JsonValues.TryNumber(f.Operand, out var size) && values.Any(v => v is JsonArray a && a.Count == size);
            case FieldOperator.All:
                // Mongo: an empty $all matches nothing; a scalar field counts as a one-element array.
                var wanted = (JsonArray)f.Operand!;
                return wanted.Count > 0 && values.Any(v => v is JsonArray a
                    ? wanted.All(w => a.Any(e => JsonValues.DeepEquals(e, w)))
                    : wanted.All(w => JsonValues.DeepEquals(v, w)));
            case FieldOperator.ElemMatch:
                return values.Any(v => v is JsonArray a && a.Any(e => f.Nested!.Matches(e, budget)));
            case FieldOperator.Not:
                return !f.Nested!.Matches(document, budget);
            default:
                throw new InvalidOperationException($"operator {f.Operator} has no evaluator");
        }
    }

    private static bool RegexAny(List<JsonNode?> values, JsonObject spec, FilterBudget budget)
    {
        var regex = Compile(spec["$regex"]!.GetValue<string>(), spec["$options"]?.GetValue<string>() ?? "");
        return Flatten(values).Any(v => JsonValues.TryString(v, out var s) && IsMatch(regex, s, budget));
    }

    /// <summary>Each value, and for array values also each element (Mongo's "any element matches").</summary>
    private static IEnumerable<JsonNode?> Flatten(IEnumerable<JsonNode?> values)
    {
        foreach (var v in values)
        {
            yield return v;
            if (v is JsonArray a)
                foreach (var e in a) yield return e;
        }
    }

    private static bool EqualsAny(List<JsonNode?> values, JsonNode? operand)
    {
        var operandIsNull = operand is null || (operand is JsonValue ov && ov.GetValueKind() == JsonValueKind.Null);
        if (operandIsNull && values.Count == 0) return true; // {field: null} matches a missing field
        return Flatten(values).Any(v => operandIsNull ? v is null || (v is JsonValue jv && jv.GetValueKind() == JsonValueKind.Null) : JsonValues.DeepEquals(v, operand));
    }

    private static bool CompareAny(List<JsonNode?> values, JsonNode? operand, bool asVersion, Func<int, bool> accept) =>
        Flatten(values).Any(v => JsonValues.Compare(v, operand, asVersion) is { } c && accept(c));

    public static Regex Compile(string pattern, string options)
    {
        var opts = RegexOptions.CultureInvariant;
        foreach (var o in options)
        {
            opts |= o switch
            {
                'i' => RegexOptions.IgnoreCase,
                'm' => RegexOptions.Multiline,
                's' => RegexOptions.Singleline,
                'x' => RegexOptions.IgnorePatternWhitespace,
                _ => throw Problems.BadRequest($"$options: unknown regex option '{o}' (use i, m, s, x)"),
            };
        }
        try { return Patterns.Get(pattern, opts); }
        catch (ArgumentException e) { throw Problems.BadRequest($"$regex: '{pattern}' is not a valid pattern: {e.Message}"); }
    }

    /// <summary>
    /// One regex test within <paramref name="budget"/>; a pattern that runs past <see cref="RegexTimeout"/> twice in a row
    /// (<see cref="RegexCache.IsMatchWithin"/>) is a 400, unless the query's budget is spent by the second try: the 400
    /// then names the budget, as it does for every query that runs out of time.
    /// </summary>
    public static bool IsMatch(Regex regex, string s, FilterBudget budget)
    {
        ArgumentNullException.ThrowIfNull(regex);
        ArgumentNullException.ThrowIfNull(budget);
        budget.Check();
        return RegexCache.IsMatchWithin(regex, s, budget.Check)
            ?? throw Problems.BadRequest($"$regex: pattern '{regex}' took too long to evaluate");
    }
}
