using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
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
        var errors = new List<FieldError>();
        ValidateObject(template, value, path ?? "", errors);
        return errors;
    }

    /// <summary>Throws a 400 (validation_failed) listing every violation, when there are any.</summary>
    public static void Ensure(JsonObject template, JsonNode? value, string path)
    {
        var errors = Validate(template, value, path);
        if (errors.Count > 0) throw Problems.Validation(errors);
    }

    private static void ValidateObject(JsonObject template, JsonNode? value, string path, List<FieldError> errors, bool secret = false)
    {
        if (template.Count == 0) return;
        if (IsNull(value)) value = new JsonObject(); // absent settings/parameters: only "required" can fail
        if (value is not JsonObject obj)
        {
            errors.Add(new FieldError(Label(path), $"must be an object, not {Describe(value)}"));
            return;
        }
        foreach (var (field, specNode) in template)
        {
            if (specNode is not JsonObject spec) continue; // reported by CheckTemplate
            var fieldPath = Join(path, field);
            obj.TryGetPropertyValue(field, out var fieldValue);
            if (IsNull(fieldValue))
            {
                if (IsTrue(spec["required"])) errors.Add(new FieldError(fieldPath, "is required"));
                continue;
            }
            ValidateValue(spec, fieldValue, fieldPath, errors, secret);
        }
    }

    // secret: the value is (part of) a field whose spec says "secret": messages never show it.
    private static void ValidateValue(JsonObject spec, JsonNode? value, string path, List<FieldError> errors, bool secret)
    {
        secret |= IsTrue(spec["secret"]);
        string Shown() => secret ? "the secret value" : Show(value);
        var type = JsonValues.TryString(spec["type"], out var t) ? t : "any";
        if (!MatchesType(type, value))
        {
            errors.Add(new FieldError(path, $"must be {Article(type)}, not {Describe(value)}"));
            return;
        }

        if (spec["choices"] is JsonArray choices && !choices.Any(c => JsonValues.DeepEquals(c, value)))
            errors.Add(new FieldError(path, $"{Shown()} is not one of {choices.ToJsonString()}"));

        if (JsonValues.TryString(value, out var s))
        {
            if (JsonValues.TryString(spec["pattern"], out var pattern)) CheckPattern(pattern, s, path, errors);
        }

        if (JsonValues.TryNumber(value, out var n))
        {
            if (JsonValues.TryNumber(spec["min"], out var min) && n < min)
                errors.Add(new FieldError(path, $"{Shown()} is less than the minimum {Number(min)}"));
            if (JsonValues.TryNumber(spec["max"], out var max) && n > max)
                errors.Add(new FieldError(path, $"{Shown()} is greater than the maximum {Number(max)}"));
        }

        if (JsonValues.TryNumber(spec["max_length"], out var maxLength))
        {
            if (value is JsonArray a && a.Count > maxLength)
                errors.Add(new FieldError(path, $"has {a.Count} items, more than max_length {Number(maxLength)}"));
            else if (JsonValues.TryString(value, out var text) && text.Length > maxLength)
                errors.Add(new FieldError(path, $"is {text.Length} characters long, more than max_length {Number(maxLength)}"));
        }

        if (value is JsonArray array && spec["items"] is JsonObject itemSpec)
        {
            for (var i = 0; i < array.Count; i++)
            {
                var itemPath = $"{path}[{i}]";
                if (IsNull(array[i]))
                {
                    if (!MatchesType(TypeOf(itemSpec), array[i])) errors.Add(new FieldError(itemPath, $"must be {Article(TypeOf(itemSpec))}, not null"));
                    continue;
                }
                ValidateValue(itemSpec, array[i], itemPath, errors, secret);
            }
        }

        if (value is JsonObject && spec["properties"] is JsonObject properties)
            ValidateObject(properties, value, path, errors, secret);
    }

    private static void CheckPattern(string pattern, string value, string path, List<FieldError> errors)
    {
        Regex regex;
        try { regex = Compile(pattern); }
        catch (ArgumentException e)
        {
            errors.Add(new FieldError(path, $"the template's pattern '{pattern}' is not a valid regular expression: {e.Message}"));
            return;
        }
        try
        {
            if (!regex.IsMatch(value)) errors.Add(new FieldError(path, $"does not match {pattern}"));
        }
        catch (RegexMatchTimeoutException)
        {
            errors.Add(new FieldError(path, $"pattern {pattern} took too long to evaluate on this value"));
        }
    }

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
        Optional(spec, "min", path, errors, n => JsonValues.TryNumber(n, out _), "a number");
        Optional(spec, "max", path, errors, n => JsonValues.TryNumber(n, out _), "a number");
        Optional(spec, "max_length", path, errors, n => JsonValues.TryNumber(n, out var m) && m >= 0 && m == decimal.Truncate(m), "a non-negative integer");
        if (JsonValues.TryNumber(spec["min"], out var min) && JsonValues.TryNumber(spec["max"], out var max) && min > max)
            errors.Add(new FieldError($"{path}.min", $"{Number(min)} is greater than max {Number(max)}"));
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

    private static void Optional(JsonObject spec, string key, string path, List<FieldError> errors, Func<JsonNode, bool> ok, string expected)
    {
        if (spec.TryGetPropertyValue(key, out var node) && !IsNull(node) && !ok(node!))
            errors.Add(new FieldError($"{path}.{key}", $"must be {expected}, not {Describe(node)}"));
    }

    internal static string TypeOf(JsonObject spec) => JsonValues.TryString(spec["type"], out var t) ? t : "any";

    private static bool MatchesType(string type, JsonNode? value) => type switch
    {
        "string" => value is JsonValue v && v.GetValueKind() == JsonValueKind.String,
        "number" => JsonValues.TryNumber(value, out _),
        "integer" => JsonValues.TryNumber(value, out var n) && n == decimal.Truncate(n),
        "boolean" => IsBoolean(value),
        "object" => value is JsonObject,
        "array" => value is JsonArray,
        _ => true, // "any", and unknown words (reported by CheckTemplate)
    };

    private static bool IsBoolean(JsonNode? n) => n is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False;

    internal static bool IsTrue(JsonNode? n) => n is JsonValue v && v.GetValueKind() == JsonValueKind.True;

    private static bool IsNull(JsonNode? node) => node is null || (node is JsonValue v && v.GetValueKind() == JsonValueKind.Null);

    internal static string Join(string path, string field) => path.Length == 0 ? field : $"{path}.{field}";

    private static string Label(string path) => path.Length == 0 ? "value" : path;

    private static string Article(string type) => type switch
    {
        "integer" or "object" or "array" => $"an {type}",
        _ => $"a {type}",
    };

    private static string Show(JsonNode? value) => value?.ToJsonString() ?? "null";

    private static string Number(decimal d) => d.ToString(CultureInfo.InvariantCulture);

    private static string Describe(JsonNode? node) => Documents.DocumentFields.Describe(node);
}
