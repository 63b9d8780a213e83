using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using System.Text.Unicode;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Templates;

/// <summary>
/// Checks values against the contract's template schemas: an object mapping a field name to a
/// spec <c>{"type", "pattern", "choices", "min", "max", "max_length", "items", "properties",
/// "required", "secret", "description"}</c>. Errors are named by path
/// (<c>policy_parameters.local_allowlist[2]</c>). Fields a value carries that the template does
/// not mention are allowed: templates describe what a policy reads, not everything it may be given.
/// </summary>
public static class TemplateValidator
{
    public static readonly IReadOnlyList<string> TypeWords = ["string", "number", "integer", "boolean", "object", "array", "any"];

    /// <summary>Bounds the time one template pattern may spend on one value.</summary>
    public static readonly TimeSpan PatternTimeout = TimeSpan.FromMilliseconds(100);

    /// <summary>Compiled template patterns, bounded (templates come from callers too).</summary>
    public static readonly RegexCache Patterns = new(1000, PatternTimeout);

    /// <summary>
    /// Validates <paramref name="value"/> (normally an object) against <paramref name="template"/>.
    /// An empty template accepts anything. <paramref name="path"/> prefixes every error path and
    /// names the value itself (e.g. <c>policy_parameters</c>).
    /// </summary>
    public static IReadOnlyList<FieldError> Validate(JsonObject template, JsonNode? value, string path)
    {
        ArgumentNullException.ThrowIfNull(template);
        // Type 2 checks every call's input and answer, and nearly all of them are valid: the list, like each path,
        // is made only once there is an error to put in it.
        List<FieldError>? errors = null;
        ValidateObject(template, value, path ?? "", ref errors, secret: false);
        return errors ?? (IReadOnlyList<FieldError>)[];
    }

    /// <summary>Throws a 400 (validation_failed) listing every violation, when there are any.</summary>
    public static void Ensure(JsonObject template, JsonNode? value, string path)
    {
        var errors = Validate(template, value, path);
        if (errors.Count > 0) throw Problems.Validation(errors);
    }

    private static void ValidateObject(JsonObject template, JsonNode? value, string path, ref List<FieldError>? errors, bool secret)
    {
        if (template.Count == 0) return;
        JsonObject? obj = null; // absent settings/parameters: only "required" can fail
        if (!IsNull(value))
        {
            obj = value as JsonObject;
            if (obj is null)
            {
                Add(ref errors, Label(path), $"must be an object, not {Describe(value)}");
                return;
            }
        }
        for (var i = 0; i < template.Count; i++)
        {
            var (field, specNode) = template.GetAt(i);
            if (specNode is not JsonObject spec) continue; // reported by CheckTemplate
            JsonNode? fieldValue = null;
            obj?.TryGetPropertyValue(field, out fieldValue);
            if (IsNull(fieldValue))
            {
                if (IsTrue(spec["required"])) Add(ref errors, Join(path, field), "is required");
                continue;
            }
            ValidateValue(spec, fieldValue!, new FieldPath(path, field), ref errors, secret);
        }
    }

    // secret: the value is (part of) a field whose spec says "secret": messages never show it.
    // A spec's keys are looked up only for the values they apply to ("pattern" for strings, "min" for numbers, ...);
    // the checks run, and report, in the order they always have.
    private static void ValidateValue(JsonObject spec, JsonNode value, FieldPath path, ref List<FieldError>? errors, bool secret)
    {
        var type = SpecTypeOf(spec);
        if (!Matches(type, value))
        {
            // A JSON number past what a double holds (Python's 10**400) is a number, just not one we can compare:
            // "must be a number, not a number" would contradict itself.
            Add(ref errors, path.ToString(), type is SpecType.Number or SpecType.Integer && IsPastDouble(value)
                ? $"is out of range: {Article(type)} must lie within ±1.7976931348623157e308, not {Abbreviated(Shown(value, IsSecret(spec, secret)))}"
                : $"must be {Article(type)}, not {Describe(value)}");
            return;
        }

        if (spec["choices"] is JsonArray choices && !IsOneOf(value, choices))
            Add(ref errors, path.ToString(), $"{Shown(value, IsSecret(spec, secret))} is not one of {choices.ToJsonString()}");

        switch (value)
        {
            case JsonValue text when text.GetValueKind() == JsonValueKind.String:
                CheckText(spec, text, path, ref errors);
                break;
            case JsonValue number when number.GetValueKind() == JsonValueKind.Number:
                // Numbers of any size: 1e30 is still above a maximum of 100.
                if (spec["min"] is { } min && JsonValues.CompareNumbers(number, min) < 0)
                    Add(ref errors, path.ToString(), $"{Shown(value, IsSecret(spec, secret))} is less than the minimum {Number(min)}");
                if (spec["max"] is { } max && JsonValues.CompareNumbers(number, max) > 0)
                    Add(ref errors, path.ToString(), $"{Shown(value, IsSecret(spec, secret))} is greater than the maximum {Number(max)}");
                break;
            case JsonArray array:
                if (JsonValues.TryNumber(spec["max_length"], out var maxLength) && array.Count > maxLength)
                    Add(ref errors, path.ToString(), $"has {array.Count} items, more than max_length {Number(maxLength)}");
                if (array.Count > 0 && spec["items"] is JsonObject itemSpec)
                    ValidateItems(itemSpec, array, path, ref errors, IsSecret(spec, secret));
                break;
            case JsonObject when spec["properties"] is JsonObject properties:
                ValidateObject(properties, value, path.ToString(), ref errors, IsSecret(spec, secret));
                break;
        }
    }

    private static void ValidateItems(JsonObject itemSpec, JsonArray array, FieldPath path, ref List<FieldError>? errors, bool secret)
    {
        var itemPaths = path.ForItems();
        for (var i = 0; i < array.Count; i++)
        {
            var item = array[i];
            if (IsNull(item))
            {
                var type = SpecTypeOf(itemSpec);
                if (!Matches(type, item)) Add(ref errors, itemPaths.Item(i).ToString(), $"must be {Article(type)}, not null");
                continue;
            }
            ValidateValue(itemSpec, item!, itemPaths.Item(i), ref errors, secret);
        }
    }

    /// <summary>"pattern" and "max_length" for a string value, read once and without making a string where it can be.</summary>
    private static void CheckText(JsonObject spec, JsonValue value, FieldPath path, ref List<FieldError>? errors)
    {
        var text = TextOf(value, stackalloc char[TextBufferLength]);
        if (spec["pattern"] is JsonValue pattern && pattern.GetValueKind() == JsonValueKind.String) CheckPattern(pattern, text, path, ref errors);
        if (JsonValues.TryNumber(spec["max_length"], out var maxLength) && text.Length > maxLength)
            Add(ref errors, path.ToString(), $"is {text.Length} characters long, more than max_length {Number(maxLength)}");
    }

    private static void CheckPattern(JsonValue patternNode, ReadOnlySpan<char> value, FieldPath path, ref List<FieldError>? errors)
    {
        string? pattern = null; // made only to compile the pattern or to name it in an error
        if (!TryReadText(patternNode, stackalloc char[TextBufferLength], out var written))
        {
            JsonValues.TryString(patternNode, out pattern);
            written = pattern;
        }
        if (!compiledAsWritten.TryGetValue(written, out var regex))
        {
            pattern ??= written.ToString();
            try { regex = Compile(pattern); }
            catch (ArgumentException e)
            {
                Add(ref errors, path.ToString(), $"the template's pattern '{pattern}' is not a valid regular expression: {e.Message}");
                return;
            }
            RememberCompiled(pattern, regex);
        }
        if (RegexCache.IsMatchWithin(regex, value) is not { } matched)
            Add(ref errors, path.ToString(), $"pattern {pattern ?? written.ToString()} took too long to evaluate on this value");
        else if (!matched)
            Add(ref errors, path.ToString(), $"does not match {pattern ?? written.ToString()}");
    }

    /// <summary>
    /// <see cref="Compile"/>'s answers by the pattern as the template writes it, looked up by text read without making
    /// a string: a rule's template is checked on every call, and translating its pattern and hashing the translation
    /// each time cost nearly as much as the match. A pattern's text is all its translation depends on, so an entry
    /// cannot go out of date. Bounded as <see cref="Patterns"/> is: when full it starts over.
    /// </summary>
    private static readonly ConcurrentDictionary<string, Regex> compiledPatterns = new(StringComparer.Ordinal);

    private static readonly ConcurrentDictionary<string, Regex>.AlternateLookup<ReadOnlySpan<char>> compiledAsWritten =
        compiledPatterns.GetAlternateLookup<ReadOnlySpan<char>>();

    private static void RememberCompiled(string pattern, Regex regex)
    {
        if (compiledPatterns.Count >= PatternCapacity) compiledPatterns.Clear();
        compiledPatterns.TryAdd(pattern, regex);
    }

    private const int PatternCapacity = 1000;

    /// <summary>Strings up to this many UTF-8 bytes are read onto the stack; longer ones become strings, as they always did.</summary>
    private const int TextBufferLength = 256;

    /// <summary>Choices are mostly short words; longer ones compare as <see cref="JsonValues.DeepEquals"/> compares them.</summary>
    private const int ChoiceBufferLength = 64;

    /// <summary>
    /// The text of a string value (of kind <see cref="JsonValueKind.String"/>): in <paramref name="buffer"/> when
    /// <see cref="TryReadText"/> can put it there, else read as <see cref="JsonValues.TryString"/> reads it.
    /// </summary>
    private static ReadOnlySpan<char> TextOf(JsonValue value, Span<char> buffer) =>
        TryReadText(value, buffer, out var text) ? text : JsonValues.TryString(value, out var s) ? s : "";

    /// <summary>
    /// Reads a string value's text without making a string. A value parsed from JSON (a request body, a stored
    /// document) has no .NET string until one is asked for, and asking makes a new one each time; its UTF-8 is decoded
    /// into <paramref name="buffer"/> here, as that would decode it. A value built in code from a string is that string.
    /// False for anything else, for text longer than the buffer, and for bytes that are not valid text: the caller then
    /// reads it the usual way, which fails as it always has.
    /// </summary>
    private static bool TryReadText(JsonValue value, Span<char> buffer, out ReadOnlySpan<char> text)
    {
        text = default;
        if (!value.TryGetValue(out JsonElement element))
        {
            if (!value.TryGetValue(out string? s)) return false;
            text = s;
            return true;
        }
        var token = JsonMarshal.GetRawUtf8Value(element); // the string as written, quotes included
        if (token.Length - 2 > buffer.Length) return false;
        int written;
        if (!token.Contains((byte)'\\'))
        {
            if (Utf8.ToUtf16(token[1..^1], buffer, out _, out written, replaceInvalidSequences: false) != OperationStatus.Done) return false;
        }
        else
        {
            // Escapes are undone by the reader the parser uses, reading the token on its own.
            var reader = new Utf8JsonReader(token);
            if (!reader.Read() || reader.TokenType != JsonTokenType.String) return false;
            try { written = reader.CopyString(buffer); }
            catch (InvalidOperationException) { return false; } // a lone surrogate escape
        }
        text = buffer[..written];
        return true;
    }

    private static bool IsOneOf(JsonNode value, JsonArray choices)
    {
        // Strings compare as text read without making strings (JsonNode.DeepEquals makes one to compare a parsed
        // string with one built in code); anything else, or text too long to read so, as DeepEquals compares it.
        scoped ReadOnlySpan<char> valueText = default;
        Span<char> valueBuffer = stackalloc char[ChoiceBufferLength];
        Span<char> choiceBuffer = stackalloc char[ChoiceBufferLength];
        var isText = value is JsonValue v && v.GetValueKind() == JsonValueKind.String && TryReadText(v, valueBuffer, out valueText);
        for (var i = 0; i < choices.Count; i++)
        {
            var choice = choices[i];
            if (isText && choice is JsonValue c && c.GetValueKind() == JsonValueKind.String && TryReadText(c, choiceBuffer, out var choiceText))
            {
                if (choiceText.SequenceEqual(valueText)) return true;
            }
            else if (JsonValues.DeepEquals(choice, value)) return true;
        }
        return false;
    }

    /// <summary>
    /// Where a value sits, kept in parts (the path of what holds it, its field name, its index) so that the string is
    /// built only for an error, or once for an object whose fields are checked in turn.
    /// </summary>
    private readonly struct FieldPath
    {
        private readonly string parent;
        private readonly string? field;
        private readonly int index;

        public FieldPath(string parent, string field) : this(parent, field, -1) { }

        private FieldPath(string parent, string? field, int index) => (this.parent, this.field, this.index) = (parent, field, index);

        /// <summary>This path, ready to name its items (an item of an item needs its own path as a string).</summary>
        public FieldPath ForItems() => index < 0 ? this : new FieldPath(ToString(), null, -1);

        /// <summary>An item of the array at this path, which comes from <see cref="ForItems"/>.</summary>
        public FieldPath Item(int i) => new(parent, field, i);

        public override string ToString()
        {
            var named = field is null ? parent : Join(parent, field);
            return index < 0 ? named : $"{named}[{index}]";
        }
    }

    private static void Add(ref List<FieldError>? errors, string path, string message) => (errors ??= []).Add(new FieldError(path, message));

    /// <summary>
    /// Compiles a template pattern (cached) with JSON Schema's (ECMA-262) reading, <see cref="SchemaPattern"/>. Searched,
    /// not anchored; bounded by <see cref="PatternTimeout"/>. A pattern that does not compile throws
    /// <see cref="ArgumentException"/> describing the pattern as written.
    /// </summary>
    public static Regex Compile(string pattern)
    {
        try { return Patterns.Get(SchemaPattern.Translate(pattern), SchemaPattern.Options); }
        catch (ArgumentException)
        {
            // The message names the pattern and an offset in it: have the engine describe the caller's text, not ours.
            _ = new Regex(pattern, SchemaPattern.Options);
            throw;
        }
    }

    /// <summary>
    /// Checks a template's own shape: every field maps to a spec object; <c>type</c> is a known word;
    /// <c>pattern</c> compiles; <c>choices</c> is an array; <c>min</c>/<c>max</c> are numbers (min ≤ max);
    /// <c>max_length</c> a non-negative integer; <c>items</c> a spec; <c>properties</c> a template;
    /// <c>required</c>/<c>secret</c> booleans; <c>description</c> a string. Other keys are allowed
    /// (existing templates carry e.g. <c>default</c> or <c>example</c>).
    /// </summary>
    public static IReadOnlyList<FieldError> CheckTemplate(JsonObject template, string path)
    {
        ArgumentNullException.ThrowIfNull(template);
        var errors = new List<FieldError>();
        CheckFields(template, path ?? "", errors);
        return errors;
    }

    private static void CheckFields(JsonObject template, string path, List<FieldError> errors)
    {
        foreach (var (field, spec) in template)
        {
            var specPath = Join(path, field);
            if (field.Length == 0) errors.Add(new FieldError(Label(path), "has a field with an empty name"));
            CheckSpec(spec, specPath, errors);
        }
    }

    private static void CheckSpec(JsonNode? specNode, string path, List<FieldError> errors)
    {
        if (specNode is not JsonObject spec)
        {
            errors.Add(new FieldError(path, $"must be a spec object such as {{\"type\": \"string\"}}, not {Describe(specNode)}"));
            return;
        }
        string? type = null;
        if (spec.TryGetPropertyValue("type", out var typeNode) && !IsNull(typeNode))
        {
            if (!JsonValues.TryString(typeNode, out var word) || !TypeWords.Contains(word, StringComparer.Ordinal))
                errors.Add(new FieldError($"{path}.type", $"{Show(typeNode)} is not one of {string.Join("|", TypeWords)}"));
            else type = word;
        }
        Optional(spec, "description", path, errors, n => JsonValues.TryString(n, out _), "a string");
        Optional(spec, "required", path, errors, IsBoolean, "true or false");
        Optional(spec, "secret", path, errors, IsBoolean, "true or false");
        Optional(spec, "choices", path, errors, n => n is JsonArray, "an array");
        Optional(spec, "min", path, errors, JsonValues.IsNumber, "a number");
        Optional(spec, "max", path, errors, JsonValues.IsNumber, "a number");
        // A bound past decimal's range (1e30) is an integer too, and bounds nothing any value reaches.
        Optional(spec, "max_length", path, errors, n => JsonValues.TryPreciseDecimal(n, out var m) ? m >= 0 && m == decimal.Truncate(m)
            : JsonValues.TryDouble(n, out var d) && d >= 7.9e28, "a non-negative integer");
        if (JsonValues.CompareNumbers(spec["min"], spec["max"]) > 0)
            errors.Add(new FieldError($"{path}.min", $"{Number(spec["min"]!)} is greater than max {Number(spec["max"]!)}"));
        if (spec.TryGetPropertyValue("pattern", out var patternNode) && !IsNull(patternNode))
        {
            if (!JsonValues.TryString(patternNode, out var pattern))
                errors.Add(new FieldError($"{path}.pattern", $"must be a string, not {Describe(patternNode)}"));
            else
            {
                try { Compile(pattern); }
                catch (ArgumentException e) { errors.Add(new FieldError($"{path}.pattern", $"'{pattern}' is not a valid regular expression: {e.Message}")); }
            }
        }
        if (spec.TryGetPropertyValue("items", out var items) && !IsNull(items))
        {
            if (type is not (null or "array" or "any")) errors.Add(new FieldError($"{path}.items", $"only applies to arrays, but type is \"{type}\""));
            CheckSpec(items, $"{path}.items", errors);
        }
        if (spec.TryGetPropertyValue("properties", out var properties) && !IsNull(properties))
        {
            if (type is not (null or "object" or "any")) errors.Add(new FieldError($"{path}.properties", $"only applies to objects, but type is \"{type}\""));
            if (properties is JsonObject nested) CheckFields(nested, $"{path}.properties", errors);
            else errors.Add(new FieldError($"{path}.properties", $"must be an object mapping field names to specs, not {Describe(properties)}"));
        }
    }

    /// <summary>The keys a spec may hold that the validator reads.</summary>
    public static readonly IReadOnlyList<string> Keywords =
        ["type", "description", "pattern", "choices", "min", "max", "max_length", "items", "properties", "required", "secret"];

    /// <summary>
    /// A key of a spec at <paramref name="Path"/> (<c>policy_input_schema.ip</c>) that does not check what it says:
    /// <paramref name="Reason"/> says why for a keyword the spec's type never reads (or choices it can never meet); null for
    /// a key that is no keyword (a template may carry
    /// such keys, e.g. <c>default</c>, so whether one is a slip for a keyword is for the caller to judge).
    /// </summary>
    public sealed record InertKey(string Path, string Key, string? Reason);

    /// <summary>
    /// Keys of <paramref name="template"/>'s specs, at any depth, that <see cref="Validate"/> never applies: keys that are
    /// no keyword, and keywords the spec's type does not read (<c>pattern</c> on a number, <c>min</c> on a string,
    /// <c>max_length</c> on a boolean), and choices none of which is of the type (which refuse every value). <see cref="CheckTemplate"/> accepts
    /// them (stored templates hold them); a writer is told, since the check it wrote does not happen.
    /// </summary>
    public static IReadOnlyList<InertKey> InertKeys(JsonObject template, string path)
    {
        ArgumentNullException.ThrowIfNull(template);
        var found = new List<InertKey>();
        foreach (var (field, spec) in template)
            if (spec is JsonObject s) InertKeysOf(s, Join(path ?? "", field), found);
        return found;
    }

    private static void InertKeysOf(JsonObject spec, string path, List<InertKey> found)
    {
        var type = SpecTypeOf(spec);
        var named = spec["type"] is JsonValue t && t.GetValueKind() == JsonValueKind.String ? t.ToString() : "any";
        foreach (var (key, value) in spec)
        {
            if (IsNull(value)) continue;
            var reason = key switch
            {
                _ when !Keywords.Contains(key, StringComparer.Ordinal) => "",
                "pattern" when type is not (SpecType.Any or SpecType.String) => $"checks nothing: pattern is only checked on strings, and the type is \"{named}\"",
                "max_length" when type is not (SpecType.Any or SpecType.String or SpecType.Array) =>
                    $"checks nothing: max_length is only checked on strings and arrays, and the type is \"{named}\"",
                "min" or "max" when type is not (SpecType.Any or SpecType.Number or SpecType.Integer) =>
                    $"checks nothing: {key} is only checked on numbers, and the type is \"{named}\"",
                "choices" when value is JsonArray { Count: > 0 } choices && !choices.Any(c => Matches(type, c)) =>
                    $"refuses every value: no choice is {Article(type)}, as the type \"{named}\" asks",
                _ => null,
            };
            if (reason is not null) found.Add(new InertKey(path, key, reason.Length == 0 ? null : reason));
        }
        if (spec["items"] is JsonObject items) InertKeysOf(items, $"{path}.items", found);
        if (spec["properties"] is JsonObject properties)
            foreach (var (field, nested) in properties)
                if (nested is JsonObject n) InertKeysOf(n, Join($"{path}.properties", field), found);
    }

    private static void Optional(JsonObject spec, string key, string path, List<FieldError> errors, Func<JsonNode, bool> ok, string expected)
    {
        if (spec.TryGetPropertyValue(key, out var node) && !IsNull(node) && !ok(node!))
            errors.Add(new FieldError($"{path}.{key}", $"must be {expected}, not {Describe(node)}"));
    }

    /// <summary>The type a spec asks for; "any" for none, and for unknown words (reported by CheckTemplate).</summary>
    private enum SpecType { Any, String, Number, Integer, Boolean, Object, Array }

    private static SpecType SpecTypeOf(JsonObject spec)
    {
        if (spec["type"] is not JsonValue word || word.GetValueKind() != JsonValueKind.String) return SpecType.Any;
        return TextOf(word, stackalloc char[16]) switch
        {
            "string" => SpecType.String,
            "number" => SpecType.Number,
            "integer" => SpecType.Integer,
            "boolean" => SpecType.Boolean,
            "object" => SpecType.Object,
            "array" => SpecType.Array,
            _ => SpecType.Any,
        };
    }

    private static bool Matches(SpecType type, JsonNode? value) => type switch
    {
        SpecType.String => value is JsonValue v && v.GetValueKind() == JsonValueKind.String,
        SpecType.Number => JsonValues.IsNumber(value),
        SpecType.Integer => JsonValues.TryPreciseDecimal(value, out var n) ? n == decimal.Truncate(n) : JsonValues.TryDouble(value, out var d) && d == Math.Floor(d),
        SpecType.Boolean => IsBoolean(value),
        SpecType.Object => value is JsonObject,
        SpecType.Array => value is JsonArray,
        _ => true,
    };

    private static string Article(SpecType type) => type switch
    {
        SpecType.String => "a string",
        SpecType.Number => "a number",
        SpecType.Integer => "an integer",
        SpecType.Boolean => "a boolean",
        SpecType.Object => "an object",
        SpecType.Array => "an array",
        _ => "any value",
    };

    private static bool IsSecret(JsonObject spec, bool inherited) => inherited || IsTrue(spec["secret"]);

    private static string Shown(JsonNode value, bool secret) => secret ? "the secret value" : Show(value);

    private static bool IsBoolean(JsonNode? n) => n is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False;

    internal static bool IsTrue(JsonNode? n) => n is JsonValue v && v.GetValueKind() == JsonValueKind.True;

    private static bool IsNull(JsonNode? node) => node is null || (node is JsonValue v && v.GetValueKind() == JsonValueKind.Null);

    internal static string Join(string path, string field) => path.Length == 0 ? field : $"{path}.{field}";

    private static string Label(string path) => path.Length == 0 ? "value" : path;

    private static string Show(JsonNode? value) => value?.ToJsonString() ?? "null";

    private static bool IsPastDouble(JsonNode value) =>
        value is JsonValue v && v.GetValueKind() == JsonValueKind.Number && !JsonValues.TryDouble(value, out _);

    // A number of hundreds of digits is named by its start and its length, not spelled out.
    private static string Abbreviated(string shown) => shown.Length <= 40 ? shown : $"{shown[..20]}... ({shown.Length} characters)";

    private static string Number(decimal d) => d.ToString(CultureInfo.InvariantCulture);

    private static string Number(JsonNode n) => JsonValues.TryNumber(n, out var d) ? Number(d) : n.ToJsonString();

    private static string Describe(JsonNode? node) => Querying.JsonValues.Describe(node);
}
