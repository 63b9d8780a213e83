using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// A filter translated to SQL as two conditions: <see cref="Certain"/> holds only for rows that surely
/// match, <see cref="Possible"/> for every row that might. Where SQL answers a node exactly both are the
/// same text; where it cannot (regex-free elemMatch, deep-equal objects, numbers SQLite would round) the
/// rows between the two are decided by Core's <see cref="FilterNode.Matches"/>.
/// </summary>
internal sealed record SqlCondition(string Certain, string Possible)
{
    public static readonly SqlCondition True = new("1", "1");
    public static readonly SqlCondition False = new("0", "0");
    public static readonly SqlCondition Unknown = new("0", "1");

    public bool IsExact => Certain == Possible;

    public static SqlCondition Exact(string sql) => new(sql, sql);

    public static SqlCondition And(params IEnumerable<SqlCondition> parts)
    {
        var list = parts.Where(p => p != True).ToList();
        if (list.Contains(False)) return False;
        if (list.Count == 0) return True;
        if (list.Count == 1) return list[0];
        return new(Join(" AND ", list.Select(p => p.Certain)), Join(" AND ", list.Select(p => p.Possible)));
    }

    public static SqlCondition Or(params IEnumerable<SqlCondition> parts)
    {
        var list = parts.Where(p => p != False).ToList();
        if (list.Contains(True)) return True;
        if (list.Count == 0) return False;
        if (list.Count == 1) return list[0];
        return new(Join(" OR ", list.Select(p => p.Certain)), Join(" OR ", list.Select(p => p.Possible)));
    }

    /// <summary>Negation swaps the roles: a row surely fails "not x" only if it surely matches x.</summary>
    public static SqlCondition Not(SqlCondition c)
    {
        if (c == True) return False;
        if (c == False) return True;
        if (c == Unknown) return Unknown;
        // SQL yields NULL where a path is missing; that means "no match", so fold it to 0 before negating.
        return new($"NOT coalesce(({c.Possible}), 0)", $"NOT coalesce(({c.Certain}), 0)");
    }

    public SqlCondition Wrap(Func<string, string> around) => new(around(Certain), around(Possible));

    /// <summary>
    /// Joins in a balanced tree: SQLite parses <c>a OR b OR c ...</c> into a chain as deep as it is long and
    /// refuses expressions deeper than 1000, while AND and OR (three-valued too) do not care how they are grouped.
    /// </summary>
    private static string Join(string op, IEnumerable<string> parts)
    {
        var list = parts.ToList();
        return Balanced(0, list.Count);

        string Balanced(int from, int count)
        {
            if (count <= 16) return "(" + string.Join(op, list.Skip(from).Take(count).Select(p => "(" + p + ")")) + ")";
            var half = count / 2;
            return "(" + Balanced(from, half) + op + Balanced(from + half, count - half) + ")";
        }
    }
}

/// <summary>Where a JSON value sits in SQL terms: its json_type, its SQL value and its JSON text.</summary>
internal abstract record SqlLocation
{
    /// <summary>Set where SQL already knows the value is an array (scalar tests are then simply false).</summary>
    public bool KnownArray { get; init; }

    public abstract string Type { get; }
    public abstract string Value { get; }
    public abstract string Text { get; }
}

/// <summary>A value reached by a path inside a JSON text: <c>json_type(json, path)</c> etc.</summary>
internal sealed record PathLocation(string Json, string PathParameter, string StaticPath) : SqlLocation
{
    public override string Type => $"json_type({Json}, {PathParameter})";
    public override string Value => $"json_extract({Json}, {PathParameter})";
    public override string Text => $"({Json} -> {PathParameter})";
}

/// <summary>An element of an array, as a row of <c>json_each</c>.</summary>
internal sealed record ElementLocation(string Alias, PathLocation Array) : SqlLocation
{
    public override string Type => $"{Alias}.type";
    public override string Value => $"{Alias}.value";
    public override string Text => $"({Array.Json} -> ({Array.PathParameter} || '[' || {Alias}.key || ']'))";
}

/// <summary>
/// Translates Core's filter tree into SQL over the JSON <c>body</c> column with json_type, json_extract and
/// json_each. Every value travels as a parameter; paths are built from validated segments and passed as
/// parameters too. The translation reproduces Core's semantics: dotted paths walk into arrays (each object
/// element, and numeric segments index), and comparison operators match when any value or any element of an
/// array value matches.
/// </summary>
internal sealed class SqlFilterTranslator
{
    /// <summary>Deeper paths fan out (object and array branches per segment); leave those to Core.</summary>
    private const int MaxPathDepth = 4;

    /// <summary>
    /// SQLite binds at most 32766 parameters per statement; a filter whose translation needs more than this
    /// (hundreds of conditions on deep paths) is decided by Core row by row instead.
    /// </summary>
    public const int MaxParameters = 30_000;

    /// <summary>Past this many strings (or numbers) in one equality list, they travel as one JSON array parameter (or go to Core).</summary>
    private const int InlineListValues = 32;
    private readonly List<KeyValuePair<string, object>> _parameters = [];
    private int _aliases;

    public IReadOnlyList<KeyValuePair<string, object>> Parameters => _parameters;

    public bool UsesRegex { get; private set; }

    /// <summary>
    /// Top-level fields with an index on <see cref="DecisionTable.ValueOf"/> (the decision table, while none of its
    /// rows holds an array or a fraction there): equality and $in on them add that expression's test, which the index
    /// answers, in front of the exact condition. With none of those about, every match passes it, so the answer stays exact.
    /// </summary>
    public IReadOnlyCollection<string> IndexedFields { get; init; } = [];

    public static (SqlCondition Condition, IReadOnlyList<KeyValuePair<string, object>> Parameters) Translate(FilterNode filter, string bodyColumn = "body")
    {
        var translator = new SqlFilterTranslator();
        return (translator.Node(filter, bodyColumn), translator.Parameters);
    }

    public SqlCondition Node(FilterNode node, string body) => node switch
    {
        AndFilter a => SqlCondition.And(CheapFirst(a.Children).Select(c => Node(c, body)).ToList()),
        OrFilter o => SqlCondition.Or(CheapFirst(o.Children).Select(c => Node(c, body)).ToList()),
        FieldFilter f => Field(f, body),
        _ => SqlCondition.Unknown,
    };

    /// <summary>
    /// SQLite evaluates AND/OR left to right and stops early, so tests that cost one JSON lookup per row go
    /// before those that open json_each over arrays or call back into .NET (order never changes the answer).
    /// </summary>
    private static IEnumerable<FilterNode> CheapFirst(IEnumerable<FilterNode> nodes) => nodes.OrderBy(n => n switch
    {
        FieldFilter { Operator: FieldOperator.Exists } => 0,
        FieldFilter { Operator: FieldOperator.Eq or FieldOperator.Ne or FieldOperator.Gt or FieldOperator.Gte or FieldOperator.Lt or FieldOperator.Lte } => 1,
        FieldFilter { Operator: FieldOperator.In or FieldOperator.Nin or FieldOperator.Size or FieldOperator.All } => 2,
        FieldFilter { Operator: FieldOperator.Regex } => 3,
        _ => 4,
    });

    private SqlCondition Field(FieldFilter f, string body)
    {
        if (f.Path.Length == 0) return SqlCondition.Unknown;
        var segments = JsonPath.Split(f.Path);
        if (segments.Length > MaxPathDepth || segments.Any(s => !IsPlainSegment(s))) return SqlCondition.Unknown;
        var asVersion = VersionComparer.IsVersionField(f.Path);
        switch (f.Operator)
        {
            case FieldOperator.Eq:
                return ThroughIndex(segments, body, new List<JsonNode?> { f.Operand }, EqualsAny(segments, body, [f.Operand]));
            case FieldOperator.Ne:
                return SqlCondition.Not(EqualsAny(segments, body, [f.Operand]));
            case FieldOperator.In:
                var inOperands = (JsonArray)f.Operand!;
                var regexes = inOperands.OfType<JsonObject>().Where(o => o.ContainsKey("$regex")).ToList();
                var parts = new List<SqlCondition> { EqualsAny(segments, body, [.. inOperands]) };
                parts.AddRange(regexes.Select(r => RegexAny(segments, body, r["$regex"]!.GetValue<string>(), r["$options"]?.GetValue<string>() ?? "")));
                return ThroughIndex(segments, body, inOperands, SqlCondition.Or(parts));
            case FieldOperator.Nin:
                var ninOperands = (JsonArray)f.Operand!;
                var ninRegexes = ninOperands.OfType<JsonObject>().Where(o => o.ContainsKey("$regex")).ToList();
                var ninParts = new List<SqlCondition> { EqualsAny(segments, body, [.. ninOperands]) };
                ninParts.AddRange(ninRegexes.Select(r => RegexAny(segments, body, r["$regex"]!.GetValue<string>(), r["$options"]?.GetValue<string>() ?? "")));
                return SqlCondition.Not(SqlCondition.Or(ninParts));
            case FieldOperator.Gt or FieldOperator.Gte or FieldOperator.Lt or FieldOperator.Lte:
                return Navigate(body, segments, v => Flatten(v, e => Compare(e, f.Operator, f.Operand, asVersion), NumberPrefilter(v, f.Operator, f.Operand)));
            case FieldOperator.Exists:
                var present = Navigate(body, segments, v => SqlCondition.Exact($"{v.Type} IS NOT NULL"));
                return f.Operand!.GetValue<bool>() ? present : SqlCondition.Not(present);
            case FieldOperator.Regex:
                return RegexAny(segments, body, f.Operand!.GetValue<string>(), f.RegexOptions);
            case FieldOperator.Size:
                if (!JsonValues.TryNumber(f.Operand, out var size) || size > int.MaxValue) return SqlCondition.Unknown;
                var sizeParam = Parameter((long)size);
                return Navigate(body, segments, v => SqlCondition.Exact($"{v.Type} = 'array' AND json_array_length({((PathLocation)v).Json}, {((PathLocation)v).PathParameter}) = {sizeParam}"));
            case FieldOperator.All:
                // Core: an empty $all matches nothing; an array needs every wanted value among its elements,
                // any other value must itself equal every wanted value.
                var wanted = ((JsonArray)f.Operand!).ToList();
                if (wanted.Count == 0) return SqlCondition.False;
                return Navigate(body, segments, v => SqlCondition.Or(
                    SqlCondition.And([SqlCondition.Exact($"{v.Type} = 'array'"), .. wanted.Select(w => AnyElement((PathLocation)v, e => ScalarEquals(e, w)))]),
                    SqlCondition.And([SqlCondition.Exact($"{v.Type} <> 'array'"), .. wanted.Select(w => ScalarEquals(v, w))])));
            case FieldOperator.Not:
                return SqlCondition.Not(Node(f.Nested!, body));
            default:
                return SqlCondition.Unknown; // $elemMatch: evaluated by Core
        }
    }

    /// <summary>
    /// <paramref name="exact"/>, behind a test of the field's indexed value where there is one. Only strings and integers
    /// up to 2^53 go there: with no array or fraction in the field, SQLite finds each equal to every value Core does
    /// (and maybe more, which the exact condition then refuses); null (which also matches a missing field), booleans,
    /// objects and regexes keep the exact condition alone.
    /// </summary>
    private SqlCondition ThroughIndex(string[] segments, string body, ICollection<JsonNode?> operands, SqlCondition exact)
    {
        if (segments.Length != 1 || body != "body" || !IndexedFields.Contains(segments[0]) || exact == SqlCondition.False) return exact;
        if (operands.Count is 0 or > InlineListValues) return exact;
        var values = new List<string>();
        foreach (var operand in operands)
        {
            if (JsonValues.TryString(operand, out var s)) values.Add(Parameter(s));
            else if (JsonValues.TryPreciseDecimal(operand, out var n) && n == decimal.Truncate(n) && Math.Abs(n) <= 9_007_199_254_740_992m) values.Add(Parameter((long)n));
            else return exact;
        }
        var value = DecisionTable.ValueOf(segments[0]);
        var lookup = values.Count == 1 ? $"{value} = {values[0]}" : $"{value} IN ({string.Join(", ", values)})";
        return SqlCondition.And(SqlCondition.Exact(lookup), exact);
    }

    private SqlCondition EqualsAny(string[] segments, string body, IReadOnlyList<JsonNode?> operands)
    {
        var matchesNull = operands.Any(IsNull);
        var found = Navigate(body, segments, v => Flatten(v, e => AnyScalarEquals(e, operands)));
        if (!matchesNull) return found;
        // {field: null} also matches a document where the path reaches nothing.
        var present = Navigate(body, segments, v => SqlCondition.Exact($"{v.Type} IS NOT NULL"));
        return SqlCondition.Or(found, SqlCondition.Not(present));
    }

    private SqlCondition RegexAny(string[] segments, string body, string pattern, string options)
    {
        FieldMatcher.Compile(pattern, options); // a bad pattern is the caller's 400, before any SQL runs
        UsesRegex = true;
        // As UTF-8 bytes, as the value goes: as TEXT, SQLite hands .NET a pattern only up to a NUL ("\u0000" would be "").
        var p = Parameter(System.Text.Encoding.UTF8.GetBytes(pattern));
        var o = Parameter(options);
        return Navigate(body, segments, v => Flatten(v, e => e.KnownArray ? SqlCondition.False : SqlCondition.Exact($"{e.Type} = 'text' AND pg_regex({p}, {o}, CAST({e.Value} AS BLOB))")));
    }

    /// <summary>
    /// Equality against several scalar operands at one value. Strings, booleans and null group into one
    /// test each; numbers are compared by SQLite only where its int64/double view cannot differ from
    /// Core's comparison (see <see cref="NumberTest"/>); objects and arrays are deep-equality, left to Core.
    /// </summary>
    private SqlCondition AnyScalarEquals(SqlLocation v, IReadOnlyList<JsonNode?> operands)
    {
        if (v.KnownArray)
            return operands.Any(o => o is JsonArray) ? new SqlCondition("0", "1") : SqlCondition.False;
        var parts = new List<SqlCondition>();
        var strings = new List<string>();
        // A long list of numbers would cost several parameters each: SQL then only narrows to numeric values and Core decides.
        var manyNumbers = operands.Count(JsonValues.IsNumber) > InlineListValues;
        if (manyNumbers) parts.Add(new SqlCondition("0", $"{v.Type} IN ('integer', 'real')"));
        foreach (var operand in operands)
        {
            if (IsNull(operand)) parts.Add(SqlCondition.Exact($"{v.Type} = 'null'"));
            else if (JsonValues.TryString(operand, out var s)) strings.Add(s);
            else if (operand is JsonValue b && b.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
                parts.Add(SqlCondition.Exact($"{v.Type} = '{(b.GetValue<bool>() ? "true" : "false")}'"));
            else if (JsonValues.IsNumber(operand)) { if (!manyNumbers) parts.Add(NumberTest(v, operand!, "=")); }
            // Objects and arrays are deep-equal only to a value of the same kind: those rows go to Core.
            else if (operand is JsonObject) parts.Add(new SqlCondition("0", $"{v.Type} = 'object'"));
            else if (operand is JsonArray) parts.Add(new SqlCondition("0", $"{v.Type} = 'array'"));
            else parts.Add(SqlCondition.Unknown);
        }
        // The value test comes first: it rejects most rows with one JSON lookup. The type test then rules out
        // an object or array whose JSON text happens to equal the string.
        if (strings.Count == 1) parts.Add(SqlCondition.Exact($"{v.Value} = {Parameter(strings[0])} AND {v.Type} = 'text'"));
        else if (strings.Count > InlineListValues)
        {
            // One parameter for the whole list: SQLite reads the (uncorrelated) subquery once per statement.
            var list = Parameter(JsonSerializer.Serialize(strings.Distinct(StringComparer.Ordinal)));
            parts.Add(SqlCondition.Exact($"{v.Value} IN (SELECT value FROM json_each({list})) AND {v.Type} = 'text'"));
        }
        else if (strings.Count > 1)
            parts.Add(SqlCondition.Exact($"{v.Value} IN ({string.Join(", ", strings.Distinct(StringComparer.Ordinal).Select(s => Parameter(s)))}) AND {v.Type} = 'text'"));
        return SqlCondition.Or(parts);
    }

    private SqlCondition ScalarEquals(SqlLocation v, JsonNode? operand) => AnyScalarEquals(v, [operand]);

    private SqlCondition Compare(SqlLocation v, FieldOperator op, JsonNode? operand, bool asVersion)
    {
        if (v.KnownArray) return SqlCondition.False; // Core orders arrays against nothing
        var sqlOp = op switch { FieldOperator.Gt => ">", FieldOperator.Gte => ">=", FieldOperator.Lt => "<", _ => "<=" };
        if (JsonValues.IsNumber(operand)) return NumberTest(v, operand!, sqlOp);
        if (JsonValues.TryString(operand, out var s))
            return SqlCondition.Exact($"{v.Type} = 'text' AND {v.Value} {sqlOp} {Parameter(s)} COLLATE {(asVersion ? SqliteCollations.Version : SqliteCollations.Ordinal)}");
        if (operand is JsonValue b && b.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
        {
            // Booleans order false < true; list which of the two satisfy the comparison.
            var bound = b.GetValue<bool>();
            var accepted = new[] { false, true }.Where(x => op switch
            {
                FieldOperator.Gt => x.CompareTo(bound) > 0,
                FieldOperator.Gte => x.CompareTo(bound) >= 0,
                FieldOperator.Lt => x.CompareTo(bound) < 0,
                _ => x.CompareTo(bound) <= 0,
            }).Select(x => x ? "'true'" : "'false'").ToList();
            return accepted.Count == 0 ? SqlCondition.False : SqlCondition.Exact($"{v.Type} IN ({string.Join(", ", accepted)})");
        }
        return SqlCondition.False; // Core orders only like with like: null, objects and arrays never compare
    }

    /// <summary>
    /// SQLite holds JSON numbers as int64 or double; Core compares them exactly as decimals when both are precise
    /// decimals and as doubles otherwise (<see cref="JsonValues.CompareNumbers"/>). For an operand that is a precise
    /// decimal with at most 15 significant digits the two agree except when the stored number is past ±1e28 (near or
    /// beyond decimal's range) or rounds to exactly the operand's double while its text carries more digits. Only
    /// those rare rows go to <c>pg_number</c>, which runs Core's own comparison on the JSON text. (A stored number
    /// below 1e-12, such as 1e-30, Core compares with such an operand as a double, as SQLite does.)
    /// </summary>
    private SqlCondition NumberTest(SqlLocation v, JsonNode operand, string sqlOp)
    {
        var isNumber = $"{v.Type} IN ('integer', 'real')";
        var op = Parameter(sqlOp);
        // abs() of int64's smallest value is an SQL error ("integer overflow"); of a REAL it is not.
        var huge = $"abs(CAST({v.Value} AS REAL)) >= 1e28";
        if (!JsonValues.TryPreciseDecimal(operand, out var exact))
        {
            JsonValues.TryDouble(operand, out var d);
            if (JsonValues.TryNumber(operand, out _)) return SmallNumberTest(v, operand, d, sqlOp, isNumber, op);
            // Beyond decimal's range Core compares as doubles, and a stored value SQLite holds below ±1e28 lies so far
            // from the operand that SQLite's comparison cannot differ from Core's; the rest go to Core.
            var inCoreBig = $"pg_number({op}, {v.Text}, {Parameter(d.ToString("R", CultureInfo.InvariantCulture))})";
            // A value built in code whose JSON text has an exponent (a float 1E-30) can be refused as a decimal at any size.
            if (Math.Abs(d) < 7.9e28) return SqlCondition.Exact($"{isNumber} AND {inCoreBig}");
            return SqlCondition.Exact($"{isNumber} AND CASE WHEN {huge} THEN {inCoreBig} ELSE {v.Value} {sqlOp} {Parameter(d)} END");
        }
        // Core gets the operand's own text: a long decimal rounds to 28 places, while a tiny value compares with its double.
        var inCore = $"pg_number({op}, {v.Text}, {Parameter(operand.ToJsonString())})";
        if (!IsSafeOperand(exact)) return SqlCondition.Exact($"{isNumber} AND {inCore}");
        var p = Parameter(SqlNumber(exact));
        var near = NearLargeInteger(v, exact);
        var unsafeValue = $"{huge} OR ({v.Value} = {p} AND (length({v.Text}) > 15 OR instr(lower({v.Text}), 'e') > 0))" + (near is null ? "" : $" OR {near}");
        // A cheap necessary condition first, so most rows cost one lookup: Core can only say yes where SQLite's
        // comparison does, or where the value rounds to the operand (a safe operand is below ±9e18, so a value past
        // ±1e28, compared as doubles, stands on the same side of it in both).
        var prefilter = sqlOp is ">" or "<" ? $"({v.Value} {sqlOp} {p} OR {v.Value} = {p})" : $"{v.Value} {sqlOp} {p}";
        if (near is not null) prefilter = $"({prefilter} OR {near})";
        return SqlCondition.Exact($"{prefilter} AND {isNumber} AND CASE WHEN {unsafeValue} THEN {inCore} ELSE {v.Value} {sqlOp} {p} END");
    }

    /// <summary>
    /// An operand smaller than 1e-12 but not zero (1e-30): Core compares it as a double with every value, as SQLite
    /// does, so SQLite decides each row whose value it holds more than one step of a double away from the operand's.
    /// Rows within that step, where SQLite's reading of a long text may differ from .NET's by its last bit, go to
    /// <c>pg_number</c> with the operand's own text (its decimal, 0 for 1e-30, is not its value).
    /// </summary>
    private SqlCondition SmallNumberTest(SqlLocation v, JsonNode operand, double d, string sqlOp, string isNumber, string op)
    {
        var inCore = $"pg_number({op}, {v.Text}, {Parameter(operand.ToJsonString())})";
        var near = $"{v.Value} BETWEEN {Parameter(Math.BitDecrement(d))} AND {Parameter(Math.BitIncrement(d))}";
        return SqlCondition.Exact($"{isNumber} AND CASE WHEN {near} THEN {inCore} ELSE {v.Value} {sqlOp} {Parameter(d)} END");
    }

    /// <summary>A precise decimal (<see cref="JsonValues.TryPreciseDecimal"/>) that SQLite holds exactly enough to compare with.</summary>
    private static bool IsSafeOperand(JsonNode? operand, out decimal d) => JsonValues.TryPreciseDecimal(operand, out d) && IsSafeOperand(d);

    private static bool IsSafeOperand(decimal d)
    {
        if (Math.Abs(d) >= 1e15m) return d == decimal.Truncate(d) && Math.Abs(d) < 9_000_000_000_000_000_000m;
        var digits = d.ToString(CultureInfo.InvariantCulture).TrimStart('-').Replace(".", "", StringComparison.Ordinal).Trim('0');
        return digits.Length <= 15;
    }

    /// <summary>
    /// For a range test against a safe number: one lookup that every possible match passes, arrays included
    /// (SQLite orders any text, such as an array's JSON, above every number), so most rows stop there.
    /// Numbers beyond decimal's range or smaller than 1e-12 are never safe operands: their rows go through
    /// <see cref="NumberTest"/> alone.
    /// </summary>
    private string? NumberPrefilter(SqlLocation v, FieldOperator op, JsonNode? operand)
    {
        if (!IsSafeOperand(operand, out var n)) return null;
        var p = Parameter(SqlNumber(n));
        var prefilter = op switch
        {
            FieldOperator.Gt => $"({v.Value} > {p} OR {v.Value} = {p})",
            FieldOperator.Gte => $"{v.Value} >= {p}",
            FieldOperator.Lt => $"({v.Value} <= {p} OR {v.Value} >= '')",
            _ => $"({v.Value} <= {p} OR {v.Value} >= '')",
        };
        return NearLargeInteger(v, n) is { } near ? $"({prefilter} OR {near})" : prefilter;
    }

    /// <summary>
    /// Past 2^53 not every integer is a double. SQLite compares the int64 operand with a stored integer exactly, as Core
    /// does, but with a stored REAL by its double, while Core reads that REAL's text as a decimal: 9007199254740993.0
    /// equals 9007199254740993 to Core, yet its double is ...992. The values within a step of the operand's double,
    /// where the two can differ, go to Core; null for an operand that needs no such care.
    /// </summary>
    private string? NearLargeInteger(SqlLocation v, decimal n)
    {
        if (n != decimal.Truncate(n) || Math.Abs(n) <= 9_007_199_254_740_992m) return null;
        var d = double.Parse(n.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return $"{v.Value} BETWEEN {Parameter(Math.BitDecrement(d))} AND {Parameter(Math.BitIncrement(d))}";
    }

    /// <summary>
    /// The operand as SQLite should hold it: an int64, or the double nearest the decimal. A cast can miss that double
    /// by one step (it divides by a power of ten a double cannot hold exactly, 1e23 and up), so the text is parsed.
    /// The int64 is boxed as one: a conditional of long and double is a double, and 9007199254740993 as a double is
    /// ...992, which SQLite finds equal to no stored integer past 2^53.
    /// </summary>
    private static object SqlNumber(decimal n) =>
        n == decimal.Truncate(n) && Math.Abs(n) < 9_000_000_000_000_000_000m
            ? (object)(long)n
            : double.Parse(n.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    /// <summary>The value itself, or any element when it is an array (Core's "any element matches").</summary>
    private SqlCondition Flatten(SqlLocation v, Func<SqlLocation, SqlCondition> test, string? prefilter = null)
    {
        var flat = Flatten(v, test);
        return prefilter is null || flat == SqlCondition.False ? flat : SqlCondition.And(SqlCondition.Exact(prefilter), flat);
    }

    private SqlCondition Flatten(SqlLocation v, Func<SqlLocation, SqlCondition> test)
    {
        var direct = test(v);
        if (v is not PathLocation array) return direct;
        var elements = AnyElement(array, test);
        var asArray = test(array with { KnownArray = true });
        if (direct == SqlCondition.False && elements == SqlCondition.False && asArray == SqlCondition.False) return SqlCondition.False;
        // One json_type per row picks the branch.
        return new SqlCondition(
            $"CASE {v.Type} WHEN 'array' THEN {OrFalse(elements.Certain, asArray.Certain)} ELSE coalesce({direct.Certain}, 0) END",
            $"CASE {v.Type} WHEN 'array' THEN {OrFalse(elements.Possible, asArray.Possible)} ELSE coalesce({direct.Possible}, 0) END");

        // An array value may itself equal the operand (deep equality) as well as contain it.
        static string OrFalse(string elements, string direct) => direct == "0" ? elements : $"({elements} OR coalesce({direct}, 0))";
    }

    private SqlCondition AnyElement(PathLocation array, Func<SqlLocation, SqlCondition> test)
    {
        var alias = $"e{_aliases++}";
        var inner = test(new ElementLocation(alias, array));
        if (inner == SqlCondition.False) return SqlCondition.False;
        return inner.Wrap(where => $"EXISTS (SELECT 1 FROM json_each({array.Json}, {array.PathParameter}) AS {alias} WHERE {where})");
    }

    /// <summary>
    /// "Some value reached by the path satisfies <paramref name="leaf"/>", following Core's JsonPath: an object
    /// is entered by key; an array is indexed by a numeric segment and each of its object elements is entered
    /// by the same segment.
    /// </summary>
    private SqlCondition Navigate(string body, string[] segments, Func<SqlLocation, SqlCondition> leaf)
    {
        // Documents are objects, so the root needs no type test.
        return Step(new PathLocation(body, Parameter("$"), "$"), segments, 0, leaf, rootIsObject: true);
    }

    private SqlCondition Step(PathLocation at, string[] segments, int index, Func<SqlLocation, SqlCondition> leaf, bool rootIsObject = false)
    {
        if (index == segments.Length) return leaf(at);
        var segment = segments[index];
        // SQLite's path lookup enters only objects by key (and only arrays by [n]), so these branches need no type test.
        var intoObject = Step(Child(at, $".\"{segment}\""), segments, index + 1, leaf);
        if (rootIsObject) return intoObject;
        var branches = new List<SqlCondition> { intoObject };
        var arrayParts = new List<SqlCondition>();
        if (int.TryParse(segment, out var position) && position >= 0)
            arrayParts.Add(Step(Child(at, $"[{position}]"), segments, index + 1, leaf));
        var alias = $"e{_aliases++}";
        var element = new PathLocation($"{alias}.value", Parameter("$"), "$");
        var inElement = Step(Child(element, $".\"{segment}\""), segments, index + 1, leaf);
        if (inElement != SqlCondition.False)
            arrayParts.Add(SqlCondition.And(SqlCondition.Exact($"{alias}.type = 'object'"), inElement)
                .Wrap(where => $"EXISTS (SELECT 1 FROM json_each({at.Json}, {at.PathParameter}) AS {alias} WHERE {where})"));
        branches.Add(SqlCondition.And(SqlCondition.Exact($"{at.Type} = 'array'"), SqlCondition.Or(arrayParts)));
        return SqlCondition.Or(branches);
    }

    private PathLocation Child(PathLocation at, string suffix)
    {
        var path = at.StaticPath + suffix;
        return new PathLocation(at.Json, Parameter(path), path);
    }

    public string AddParameter(object value) => Parameter(value);

    private string Parameter(object value)
    {
        var name = $"$p{_parameters.Count}";
        _parameters.Add(new(name, value));
        return name;
    }

    /// <summary>Segments that can be written as a quoted SQLite JSON path label without escaping.</summary>
    public static bool IsPlainSegment(string s) => s.Length > 0 && s.All(c => c >= ' ' && c != '"' && c != '\\' && c != '\u007f');

    private static bool IsNull(JsonNode? n) => n is null || (n is JsonValue v && v.GetValueKind() == JsonValueKind.Null);
}
