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

    /// <summary>
    /// Most field conditions one filter may hold (each operator on a field counts, at any depth of
    /// $and/$or/$not/$elemMatch). Stores translate every condition into query text and parameters, and
    /// a few hundred is far past any hand-written filter; a longer list of values belongs in $in.
    /// </summary>
    public const int MaxConditions = 256;

    /// <summary>Most values one $in, $nin or $all may list.</summary>
    public const int MaxListValues = 10_000;

    /// <summary>Parses a filter; null or an empty object matches everything.</summary>
    public static FilterNode Parse(JsonNode? body)
    {
        if (body is null || (body is JsonValue v && v.GetValueKind() == JsonValueKind.Null)) return new AndFilter([]);
        if (body is not JsonObject obj) throw Problems.BadRequest("filter must be a JSON object such as {\"name\": \"ip_allowlist\"}");
        var filter = ParseObject(obj, "");
        if (Conditions(filter) is var count and > MaxConditions)
            throw Problems.BadRequest($"filter has {count} conditions; a filter may hold at most {MaxConditions} (every operator on a field counts, inside $and/$or too): list alternatives of one field with $in");
        return filter;
    }

    private static int Conditions(FilterNode node) => node switch
    {
        AndFilter a => a.Children.Sum(Conditions),
        OrFilter o => o.Children.Sum(Conditions),
        FieldFilter f => 1 + (f.Nested is null ? 0 : Conditions(f.Nested)),
        _ => 1,
    };

    private static FilterNode ParseObject(JsonObject obj, string scope, bool inElement = false)
    {
        var children = new List<FilterNode>();
        foreach (var (key, value) in obj)
        {
            if (key.StartsWith('$'))
            {
                children.Add(key switch
                {
                    "$and" => new AndFilter(ParseList(key, value, scope, inElement)),
                    "$or" => new OrFilter(ParseList(key, value, scope, inElement)),
                    // A field's operator where a field belongs ({"$gt": 1} beside fields in $elemMatch, or in its $or): it is
                    // no unknown operator, it lacks its field.
                    _ when Operators.ContainsKey(key) || key == "$options" => throw Problems.BadRequest(
                        $"filter operator '{key}' applies to a field and appears here without one: write it inside the field's object, as in {{\"score\": {{\"{key}\": ...}}}}; " +
                        "inside $elemMatch an object of operators alone applies them to each element, and one holding fields (or $and/$or) tests the elements' fields"),
                    _ => throw Unknown(key, "at the top level of a filter only $and and $or may appear"),
                });
                continue;
            }
            if (key.Length == 0 || key.Split('.').Any(s => s.Length == 0))
                throw Problems.BadRequest($"filter field '{key}' is not a valid dotted path");
            // As in sort keys (and '$' as in update paths): such a field is a misplaced operator ("a.$eq") or a broken
            // client, and answered, it would match nothing without saying why.
            if (key.Any(char.IsControl))
                throw Problems.BadRequest($"filter field '{Printable(key)}' holds a control character; field names are printable text");
            if (key.Split('.').FirstOrDefault(s => s.StartsWith('$')) is { } operatorLike)
                throw Problems.BadRequest($"filter field '{key}' has a segment starting with '$' ('{operatorLike}'): field names do not start with '$'; an operator goes inside the field's object, as in {{\"a.b\": {{\"$eq\": 1}}}}");
            var path = scope.Length == 0 ? key : $"{scope}.{key}";
            if (JsonPath.Split(path).Length > JsonPath.MaxSegments)
                throw Problems.BadRequest($"filter field '{JsonPath.Abbreviate(path)}' has more than {JsonPath.MaxSegments} segments, more levels than a document may nest");
            var conditions = ParseField(path, key, value).ToList();
            if (!inElement && StringVersionFields.Contains(path))
                foreach (var condition in conditions) RequireVersionStrings(path, condition);
            children.AddRange(conditions);
        }
        return children.Count == 1 ? children[0] : new AndFilter(children);
    }

    private static List<FilterNode> ParseList(string op, JsonNode? value, string scope, bool inElement)
    {
        if (value is not JsonArray array || array.Count == 0 || array.Any(e => e is not JsonObject))
            throw Problems.BadRequest($"{op} takes a non-empty array of filter objects");
        return array.Select(e => ParseObject((JsonObject)e!, scope, inElement)).ToList();
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
                    if (list.Count > MaxListValues)
                        throw Problems.BadRequest($"{label} lists {list.Count} values; it may list at most {MaxListValues}");
                    foreach (var element in list) CheckListElement(label, op, element);
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
                    if (JsonValues.IsBeyond(operand, 0, int.MaxValue) && JsonValues.TryDouble(operand, out var big) && big > int.MaxValue)
                        throw Problems.BadRequest($"{label} takes a non-negative integer up to {int.MaxValue}: {operand!.ToJsonString()} is out of range");
                    if (!JsonValues.TryPreciseDecimal(operand, out var n) || n < 0 || n != decimal.Truncate(n) || n > int.MaxValue)
                        throw Problems.BadRequest($"{label} takes a non-negative integer");
                    result.Add(new FieldFilter(path, op, operand!.DeepClone()));
                    break;
                case FieldOperator.Regex:
                    var pattern = RequireString(label, operand);
                    RefusePosixClasses(label, pattern);
                    FieldMatcher.Compile(pattern, options); // reject bad patterns now, as a 400
                    result.Add(new FieldFilter(path, op, JsonValue.Create(pattern), null, options));
                    break;
                case FieldOperator.ElemMatch:
                    if (operand is not JsonObject em || em.Count == 0) throw Problems.BadRequest($"{label} takes a non-empty object");
                    // {"$gte": 80} applies to each element itself; {"score": {...}} or {"$or": [...]} to each element's fields.
                    var operatorForm = em.All(p => p.Key.StartsWith('$')) && !em.Any(p => p.Key is "$and" or "$or");
                    var nested = operatorForm ? And(ParseOperators("", em)) : ParseObject(em, "", inElement: true);
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

    /// <summary>
    /// An element of $in/$nin/$all is a literal value, or for $in/$nin a <c>{"$regex": ..., "$options": ...}</c>
    /// (checked here so matching never fails on it). An object of other operators would otherwise be
    /// compared as a literal and silently match nothing, so it is refused like any unknown operator.
    /// </summary>
    private static void CheckListElement(string label, FieldOperator op, JsonNode? element)
    {
        if (element is not JsonObject o || !o.Any(p => p.Key.StartsWith('$'))) return;
        if (op is FieldOperator.All || !o.ContainsKey("$regex"))
        {
            var name = o.First(p => p.Key.StartsWith('$')).Key;
            var hint = op is FieldOperator.All
                ? $"{label} takes literal values to find in the array (to match elements by a condition, put $elemMatch beside it in $and)"
                : $"{label} takes literal values or {{\"$regex\": ..., \"$options\": ...}}";
            throw Operators.ContainsKey(name) || name is "$and" or "$or" or "$options"
                ? Problems.BadRequest($"filter operator '{name}' cannot appear inside a list: {hint}")
                : Unknown(name, hint);
        }
        if (o.Any(p => p.Key is not ("$regex" or "$options")))
            throw Problems.BadRequest($"{label}: a regex element may hold only $regex and $options");
        var pattern = RequireString($"{label}: $regex", o["$regex"]);
        var options = o.ContainsKey("$options") ? RequireString($"{label}: $options", o["$options"]) : "";
        RefusePosixClasses($"{label}: $regex", pattern);
        FieldMatcher.Compile(pattern, options);
    }

    /// <summary>
    /// POSIX bracket expressions (<c>[[:alpha:]]</c>, <c>[[=a=]]</c>, <c>[[.a.]]</c>) are refused by name. MongoDB's PCRE
    /// reads <c>[[:alpha:]]</c> as "a letter"; .NET has no such classes and reads it, silently, as the set of the
    /// characters <c>[ : a l p h</c> followed by a literal <c>]</c>, so the same filter would match other documents
    /// here (in Core and in the SQLite pushdown alike, both of which compile what this parser passes).
    /// </summary>
    private static void RefusePosixClasses(string label, string pattern)
    {
        for (var i = 0; i < pattern.Length - 1; i++)
        {
            if (pattern[i] == '\\') { i++; continue; } // an escaped '[' is a literal bracket, in PCRE and .NET alike
            if (pattern[i] != '[' || pattern[i + 1] is not (':' or '=' or '.')) continue;
            var mark = pattern[i + 1];
            var end = pattern.IndexOf($"{mark}]", i + 2, StringComparison.Ordinal);
            if (end < 0) continue;
            var name = pattern[(i + 2)..end];
            if (name.Length == 0 || !name.All(char.IsAsciiLetterOrDigit)) continue;
            var construct = pattern[i..(end + 2)];
            throw Problems.BadRequest($"{label}: '{Printable(construct)}' is a POSIX bracket expression, which is not supported: " +
                $"this server's regex engine (.NET) would read it as a set of its characters, not as MongoDB does" +
                (PosixEquivalents.TryGetValue(name, out var instead) ? $"; write {instead} instead" : "; write the characters or a \\p{...} class instead"));
        }
    }

    private static readonly Dictionary<string, string> PosixEquivalents = new(StringComparer.Ordinal)
    {
        ["alpha"] = "[a-zA-Z] (or \\p{L} for letters of any script)",
        ["digit"] = "[0-9] (or \\d)",
        ["alnum"] = "[a-zA-Z0-9]",
        ["upper"] = "[A-Z]",
        ["lower"] = "[a-z]",
        ["space"] = "\\s",
        ["blank"] = "[ \\t]",
        ["xdigit"] = "[0-9A-Fa-f]",
        ["word"] = "\\w",
        ["punct"] = "\\p{P} (with \\p{S} for symbols)",
        ["cntrl"] = "\\p{Cc}",
    };

    /// <summary>
    /// Top-level fields every stored document holds as a string, if at all, and that compare as versions. A number
    /// (or boolean) against one can never match, so a filter holding one is a 400 rather than an empty 200: someone who
    /// writes <c>{"version": {"$gt": 1}}</c> means versions, and reading the number as one would be a trap, since the
    /// JSON number 1.10 is 1.1. (A nested <c>*.version</c> lives in free-form data such as metadata, where numbers are
    /// legitimate values, so numbers there compare as numbers.)
    /// </summary>
    private static readonly HashSet<string> StringVersionFields = new(StringComparer.Ordinal) { "version", "graph_version" };

    private static void RequireVersionStrings(string path, FilterNode condition)
    {
        switch (condition)
        {
            case AndFilter and:
                foreach (var child in and.Children) RequireVersionStrings(path, child);
                break;
            case FieldFilter { Operator: FieldOperator.Not, Nested: { } nested }:
                RequireVersionStrings(path, nested);
                break;
            case FieldFilter { Operator: FieldOperator.Eq or FieldOperator.Ne or FieldOperator.Gt or FieldOperator.Gte or FieldOperator.Lt or FieldOperator.Lte } f:
                RequireVersionString(path, f.Operator, f.Operand);
                break;
            case FieldFilter { Operator: FieldOperator.In or FieldOperator.Nin or FieldOperator.All, Operand: JsonArray list } f:
                foreach (var element in list) RequireVersionString(path, f.Operator, element);
                break;
        }
    }

    private static void RequireVersionString(string path, FieldOperator op, JsonNode? operand)
    {
        if (operand is not JsonValue v || v.GetValueKind() is not (JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False)) return;
        var kind = v.GetValueKind() == JsonValueKind.Number ? "a number" : "a boolean";
        var where = op is FieldOperator.Eq ? "" : $" in ${op.ToString().ToLowerInvariant()}";
        throw Problems.BadRequest($"filter field '{path}'{where} compares {operand.ToJsonString()}, {kind}, but {path} is a version string: " +
            $"give it as a string, such as {{\"{path}\": {{\"$gt\": \"1.10\"}}}} (versions are not read from numbers: the JSON number 1.10 is 1.1)");
    }

    private static FilterNode And(List<FilterNode> nodes) => nodes.Count == 1 ? nodes[0] : new AndFilter(nodes);

    private static string RequireString(string label, JsonNode? node) =>
        JsonValues.TryString(node, out var s) ? s : throw Problems.BadRequest($"{label} takes a string");

    /// <summary>Text for a message with control characters shown as <c>\u0000</c> escapes.</summary>
    private static string Printable(string text) =>
        string.Concat(text.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));

    private static PolicyGridException Unknown(string op, string hint) => Problems.BadRequest($"unknown filter operator '{op}': {hint}");
}
