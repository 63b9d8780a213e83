using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Querying;

/// <summary>
/// Parses a Mongo-style filter body into a <see cref="FilterNode"/> tree. Every operator is
/// checked here, once, so an unknown operator or a mistyped operand is a 400 naming it and
/// adapters never see raw text.
/// </summary>
public static class FilterParser
{
    private static readonly Dictionary<string, FieldOperator> Operators = new(StringComparer.Ordinal)
    {
        ["$eq"] = FieldOperator.Eq, ["$ne"] = FieldOperator.Ne, ["$gt"] = FieldOperator.Gt, ["$gte"] = FieldOperator.Gte,
        ["$lt"] = FieldOperator.Lt, ["$lte"] = FieldOperator.Lte, ["$in"] = FieldOperator.In, ["$nin"] = FieldOperator.Nin,
        ["$regex"] = FieldOperator.Regex, ["$exists"] = FieldOperator.Exists, ["$all"] = FieldOperator.All,
        ["$size"] = FieldOperator.Size, ["$elemMatch"] = FieldOperator.ElemMatch, ["$not"] = FieldOperator.Not,
    };

    public const string SupportedOperators = "$eq $ne $gt $gte $lt $lte $in $nin $regex $options $exists $and $or $not $all $size $elemMatch";

    /// <summary>Parses a filter; null or an empty object matches everything.</summary>
    public static FilterNode Parse(JsonNode? body)
    {
        if (body is null || (body is JsonValue v && v.GetValueKind() == JsonValueKind.Null)) return new AndFilter([]);
        if (body is not JsonObject obj) throw Problems.BadRequest("filter must be a JSON object such as {\"name\": \"ip_allowlist\"}");
        return ParseObject(obj, "");
    }

    private static FilterNode ParseObject(JsonObject obj, string scope)
    {
        var children = new List<FilterNode>();
        foreach (var (key, value) in obj)
        {
            if (key.StartsWith('$'))
            {
                children.Add(key switch
                {
                    "$and" => new AndFilter(ParseList(key, value, scope)),
                    "$or" => new OrFilter(ParseList(key, value, scope)),
                    _ => throw Unknown(key, "at the top level of a filter only $and and $or may appear"),
                });
                continue;
            }
            if (key.Length == 0 || key.Split('.').Any(s => s.Length == 0))
                throw Problems.BadRequest($"filter field '{key}' is not a valid dotted path");
            var path = scope.Length == 0 ? key : $"{scope}.{key}";
            children.AddRange(ParseField(path, key, value));
        }
        return children.Count == 1 ? children[0] : new AndFilter(children);
    }

    private static List<FilterNode> ParseList(string op, JsonNode? value, string scope)
    {
        if (value is not JsonArray array || array.Count == 0 || array.Any(e => e is not JsonObject))
            throw Problems.BadRequest($"{op} takes a non-empty array of filter objects");
        return array.Select(e => ParseObject((JsonObject)e!, scope)).ToList();
    }

    private static IEnumerable<FilterNode> ParseField(string path, string key, JsonNode? value)
    {
        if (value is JsonObject ops && ops.Count > 0 && ops.Any(p => p.Key.StartsWith('$')))
        {
            if (!ops.All(p => p.Key.StartsWith('$')))
                throw Problems.BadRequest($"filter field '{key}' mixes operators and plain fields; use either {{\"$op\": ...}} or a literal object");
            return ParseOperators(path, ops);
        }
        return [new FieldFilter(path, FieldOperator.Eq, value?.DeepClone())];
    }

    /// <summary>Operator expressions on one path; path "" means the value itself (inside $elemMatch).</summary>
    private static List<FilterNode> ParseOperators(string path, JsonObject ops)
    {
        var result = new List<FilterNode>();
        var options = ops["$options"] is { } o ? RequireString("$options", o) : "";
        if (ops.ContainsKey("$options") && !ops.ContainsKey("$regex")) throw Problems.BadRequest("$options needs a $regex beside it");
        foreach (var (name, operand) in ops)
        {
            if (name == "$options") continue;
            if (!Operators.TryGetValue(name, out var op)) throw Unknown(name, $"supported operators: {SupportedOperators}");
            var label = path.Length == 0 ? name : $"{path}: {name}";
            switch (op)
            {
                case FieldOperator.In or FieldOperator.Nin or FieldOperator.All:
                    if (operand is not JsonArray list) throw Problems.BadRequest($"{label} takes an array");
                    if (op is not FieldOperator.All)
                        foreach (var element in list) CheckRegexElement(label, element);
                    result.Add(new FieldFilter(path, op, operand.DeepClone()));
                    break;
                case FieldOperator.Gt or FieldOperator.Gte or FieldOperator.Lt or FieldOperator.Lte:
                    if (operand is not JsonValue cv || cv.GetValueKind() is not (JsonValueKind.Number or JsonValueKind.String or JsonValueKind.True or JsonValueKind.False))
                        throw Problems.BadRequest($"{label} takes a number, string or boolean");
                    result.Add(new FieldFilter(path, op, operand.DeepClone()));
                    break;
                case FieldOperator.Exists:
                    if (operand is not JsonValue ev || ev.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
                        throw Problems.BadRequest($"{label} takes true or false");
                    result.Add(new FieldFilter(path, op, operand.DeepClone()));
                    break;
                case FieldOperator.Size:
                    if (!JsonValues.TryNumber(operand, out var n) || n < 0 || n != decimal.Truncate(n) || n > int.MaxValue)
                        throw Problems.BadRequest($"{label} takes a non-negative integer");
                    result.Add(new FieldFilter(path, op, operand!.DeepClone()));
                    break;
                case FieldOperator.Regex:
                    var pattern = RequireString(label, operand);
                    FieldMatcher.Compile(pattern, options); // reject bad patterns now, as a 400
                    result.Add(new FieldFilter(path, op, JsonValue.Create(pattern), null, options));
                    break;
                case FieldOperator.ElemMatch:
                    if (operand is not JsonObject em || em.Count == 0) throw Problems.BadRequest($"{label} takes a non-empty object");
                    // {"$gte": 80} applies to each element itself; {"score": {...}} or {"$or": [...]} to each element's fields.
                    var operatorForm = em.All(p => p.Key.StartsWith('$')) && !em.Any(p => p.Key is "$and" or "$or");
                    var nested = operatorForm ? And(ParseOperators("", em)) : ParseObject(em, "");
                    result.Add(new FieldFilter(path, op, operand.DeepClone(), nested));
                    break;
                case FieldOperator.Not:
                    if (operand is not JsonObject no || no.Count == 0 || !no.All(p => p.Key.StartsWith('$')))
                        throw Problems.BadRequest($"{label} takes an operator object such as {{\"$regex\": \"^tmp\"}}");
                    result.Add(new FieldFilter(path, op, operand.DeepClone(), And(ParseOperators(path, no))));
                    break;
                default:
                    result.Add(new FieldFilter(path, op, operand?.DeepClone()));
                    break;
            }
        }
        return result;
    }

    /// <summary>A <c>{"$regex": ..., "$options": ...}</c> element of $in/$nin is checked here so matching never fails on it.</summary>
    private static void CheckRegexElement(string label, JsonNode? element)
    {
        if (element is not JsonObject o || !o.ContainsKey("$regex")) return;
        if (o.Any(p => p.Key is not ("$regex" or "$options")))
            throw Problems.BadRequest($"{label}: a regex element may hold only $regex and $options");
        var pattern = RequireString($"{label}: $regex", o["$regex"]);
        var options = o.ContainsKey("$options") ? RequireString($"{label}: $options", o["$options"]) : "";
        FieldMatcher.Compile(pattern, options);
    }

    private static FilterNode And(List<FilterNode> nodes) => nodes.Count == 1 ? nodes[0] : new AndFilter(nodes);

    private static string RequireString(string label, JsonNode? node) =>
        JsonValues.TryString(node, out var s) ? s : throw Problems.BadRequest($"{label} takes a string");

    private static PolicyGridException Unknown(string op, string hint) => Problems.BadRequest($"unknown filter operator '{op}': {hint}");
}
