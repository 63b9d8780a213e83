using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Documents;

/// <summary>
/// Applies a PUT body to a stored document. The body is either a Mongo-style update made only of
/// operators (<c>$set</c>, <c>$unset</c>, <c>$push</c>, <c>$inc</c> on dotted paths) or a full
/// replacement document (no <c>$</c> keys). Identity fields never change: a new version is a new
/// document. The result is a new object; callers re-run the kind's <c>FromJson</c> on it, so
/// every other rule of the document still applies.
/// </summary>
public static class UpdateEngine
{
    public static readonly IReadOnlyList<string> Operators = ["$set", "$unset", "$push", "$inc"];

    /// <summary>Longest dotted path an update may name: one segment per level a document may nest.</summary>
    public const int MaxPathSegments = JsonPath.MaxSegments;

    /// <summary>
    /// Refuses an operator update that named a top-level field the document does not keep (a typo such as
    /// <c>{"$set": {"descripton": "x"}}</c>): <paramref name="kept"/> is the updated document as its type stores it.
    /// Answered 200, such an update would change nothing. A full replacement is read like a create, which ignores
    /// fields it does not know.
    /// </summary>
    public static void EnsureFieldsKept(JsonObject update, JsonObject kept)
    {
        ArgumentNullException.ThrowIfNull(update);
        ArgumentNullException.ThrowIfNull(kept);
        var unknown = update.Where(p => p.Key.StartsWith('$') && p.Value is JsonObject)
            .SelectMany(p => ((JsonObject)p.Value!).Select(field => field.Key.Split('.', 2)[0]))
            .Where(field => !kept.ContainsKey(field))
            .Distinct(StringComparer.Ordinal)
            .ToList();
        if (unknown.Count > 0)
            throw Problems.Validation([.. unknown.Select(field => new FieldError(field,
                $"is not a field of this document, so the update would change nothing (fields: {string.Join(", ", kept.Select(p => p.Key))})"))]);
    }

    public static JsonObject Apply(JsonObject current, JsonObject update, IReadOnlySet<string> identityFields)
    {
        ArgumentNullException.ThrowIfNull(current);
        ArgumentNullException.ThrowIfNull(update);
        ArgumentNullException.ThrowIfNull(identityFields);
        if (update.Count == 0)
            throw Problems.BadRequest("the update is empty: send operators such as {\"$set\": {\"status\": \"deprecated\"}} or a full document");

        var operators = update.Where(p => p.Key.StartsWith('$')).Select(p => p.Key).ToList();
        JsonObject result;
        if (operators.Count == 0)
        {
            result = (JsonObject)update.DeepClone();
            // A replacement may leave identity fields out (the URL already names the document).
            foreach (var field in identityFields)
                if (DocumentFields.IsNull(result[field]) && current[field] is { } kept)
                    result[field] = kept.DeepClone();
        }
        else
        {
            if (operators.Count != update.Count)
            {
                var plain = update.Where(p => !p.Key.StartsWith('$')).Select(p => p.Key);
                throw Problems.BadRequest(
                    $"the update mixes operators ({string.Join(", ", operators)}) with plain fields ({string.Join(", ", plain)}); send either only operators or a full document");
            }
            var changes = update.SelectMany(p => Changes(p.Key, p.Value)).ToList();
            EnsureNoConflicts(changes);
            result = (JsonObject)current.DeepClone();
            foreach (var change in changes)
                Apply(result, change);
            // Operators can nest deeper than any body could (a long path, a deep value at it); such a
            // document could be stored but never read back.
            DocumentDepth.Ensure(result, DocumentDepth.MaxStored);
        }

        foreach (var field in identityFields.Order(StringComparer.Ordinal))
        {
            if (!current.TryGetPropertyValue(field, out var before)) continue;
            result.TryGetPropertyValue(field, out var after);
            if (!JsonValues.DeepEquals(before, after))
                throw Problems.Validation(field,
                    $"is an identity field and cannot change ({Show(before)} -> {Show(after)}); a new version is a new document");
        }
        return result;
    }

    /// <summary>
    /// Applies an update to a stored document of kind <typeparamref name="T"/> and validates the
    /// result as that kind (identity fields protected, every other rule re-checked).
    /// </summary>
    public static T Apply<T>(JsonObject current, JsonObject update) where T : IDocument<T> =>
        T.FromJson(Apply(current, update, T.IdentityFields));

    /// <summary>One operator applied to one path.</summary>
    private sealed record Change(string Operator, string Path, string[] Segments, JsonNode? Value);

    /// <summary>The changes one operator asks for, each path checked.</summary>
    private static IEnumerable<Change> Changes(string op, JsonNode? argument)
    {
        if (!Operators.Contains(op, StringComparer.Ordinal))
            throw Problems.BadRequest($"unknown update operator '{op}': supported operators are {string.Join(", ", Operators)}");
        if (argument is not JsonObject fields || fields.Count == 0)
            throw Problems.BadRequest($"{op} takes a non-empty object of {{\"dotted.path\": value}}");
        return fields.Select(p => new Change(op, p.Key, CheckPath(op, p.Key), p.Value)).ToList();
    }

    /// <summary>
    /// Refuses two changes to one path, or to a path and one of its parents or children (<c>$set</c> and
    /// <c>$unset</c> of <c>metadata.owner</c>; <c>$set</c> of <c>metadata</c> beside <c>$inc</c> of
    /// <c>metadata.count</c>), as Mongo does: the outcome would depend on the order they are applied in.
    /// </summary>
    private static void EnsureNoConflicts(List<Change> changes)
    {
        var byPath = new Dictionary<string, Change>(StringComparer.Ordinal);
        var conflicts = new List<FieldError>();
        foreach (var change in changes)
        {
            if (byPath.TryGetValue(change.Path, out var same)) conflicts.Add(Conflict(same, change));
            else byPath[change.Path] = change;
        }
        foreach (var change in changes)
        {
            for (var length = 1; length < change.Segments.Length; length++)
                if (byPath.TryGetValue(string.Join('.', change.Segments[..length]), out var parent))
                    conflicts.Add(Conflict(parent, change));
        }
        if (conflicts.Count > 0) throw Problems.Validation(conflicts);
    }

    private static FieldError Conflict(Change first, Change second) => new(second.Path,
        $"{second.Operator} of '{second.Path}' conflicts with {first.Operator} of '{first.Path}' in the same update: " +
        "a path, its parents and its children may be changed by one operator once; send separate updates");

    private static void Apply(JsonObject document, Change change)
    {
        var (op, path, segments, value) = (change.Operator, change.Path, change.Segments, change.Value);
        switch (op)
        {
            case "$set": Set(document, segments, path, value); break;
            case "$unset": Unset(document, segments, path); break;
            case "$push": Push(document, segments, path, value); break;
            case "$inc": Increment(document, segments, path, value); break;
        }
    }

    private static string[] CheckPath(string op, string path)
    {
        var segments = path.Split('.');
        if (segments.Length > MaxPathSegments)
            throw Problems.BadRequest($"{op}: path '{JsonPath.Abbreviate(path)}' has {segments.Length} segments; a path may have at most {MaxPathSegments} (a document nests at most {DocumentDepth.MaxStored} levels)");
        if (path.Length == 0 || segments.Any(s => s.Length == 0))
            throw Problems.BadRequest($"{op}: '{path}' is not a valid dotted path");
        if (segments.Any(s => s.StartsWith('$')))
            throw Problems.BadRequest($"{op}: path '{path}' may not contain operators");
        return segments;
    }

    private static void Set(JsonObject document, string[] segments, string path, JsonNode? value)
    {
        var parent = Parent(document, segments, path, "$set", create: true)!;
        Assign(parent, segments[^1], path, "$set", value?.DeepClone());
    }

    private static void Unset(JsonObject document, string[] segments, string path)
    {
        var parent = Parent(document, segments, path, "$unset", create: false);
        switch (parent)
        {
            case JsonObject obj: obj.Remove(segments[^1]); break;
            // Removing an element would shift the others; Mongo nulls it instead, and so do we.
            case JsonArray array when int.TryParse(segments[^1], out var i) && i >= 0 && i < array.Count: array[i] = null; break;
        }
    }

    private static void Push(JsonObject document, string[] segments, string path, JsonNode? value)
    {
        var parent = Parent(document, segments, path, "$push", create: true)!;
        var existing = Read(parent, segments[^1]);
        var items = value is JsonObject each && each.ContainsKey("$each")
            ? each["$each"] as JsonArray ?? throw Problems.BadRequest($"$push: '{path}': $each takes an array")
            : new JsonArray(value?.DeepClone());
        if (value is JsonObject withEach && withEach.Count > 1 && withEach.ContainsKey("$each"))
            throw Problems.BadRequest($"$push: '{path}': only $each is supported beside the values");
        if (DocumentFields.IsNull(existing))
        {
            Assign(parent, segments[^1], path, "$push", new JsonArray(items.Select(i => i?.DeepClone()).ToArray()));
            return;
        }
        if (existing is not JsonArray array)
            throw Problems.BadRequest($"$push: '{path}' is {JsonValues.Describe(existing)}, not an array");
        foreach (var item in items) array.Add(item?.DeepClone());
    }

    private static void Increment(JsonObject document, string[] segments, string path, JsonNode? value)
    {
        if (!JsonValues.TryPreciseDecimal(value, out var by))
            throw Problems.BadRequest(IsNumber(value)
                ? $"$inc: '{path}': {value!.ToJsonString()} is out of range; $inc adds numbers of {IncRange}"
                : $"$inc: '{path}' takes a number, not {JsonValues.Describe(value)}");
        var parent = Parent(document, segments, path, "$inc", create: true)!;
        var existing = Read(parent, segments[^1]);
        if (DocumentFields.IsNull(existing))
        {
            Assign(parent, segments[^1], path, "$inc", JsonValue.Create(by));
            return;
        }
        if (!JsonValues.TryPreciseDecimal(existing, out var old))
            throw Problems.BadRequest(IsNumber(existing)
                ? $"$inc: '{path}' holds {existing!.ToJsonString()}, out of the range $inc can add to ({IncRange}); $set it instead"
                : $"$inc: '{path}' is {JsonValues.Describe(existing)}, not a number");
        decimal sum;
        try { sum = old + by; }
        catch (OverflowException) { throw Problems.BadRequest($"$inc: '{path}': {Invariant(old)} + {Invariant(by)} would overflow (beyond {IncRange})"); }
        Assign(parent, segments[^1], path, "$inc", JsonValue.Create(sum));
    }

    /// <summary>
    /// $inc adds as decimal (exact for money-like values), whose range ends near 7.9e28 and whose 28 places hold a
    /// number below 1e-12 only approximately (1e-30 would be added as 0): such numbers are refused, to be $set.
    /// </summary>
    private const string IncRange = "1e-12 to 7.9e28 in size (or 0)";

    private static string Invariant(decimal d) => d.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static bool IsNumber(JsonNode? node) => node is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number;

    /// <summary>
    /// The container holding the path's last segment. With <paramref name="create"/>, missing
    /// intermediate objects are made; without it a missing one answers null. Arrays are indexed
    /// by numeric segments. Walking into a string or number is a 400.
    /// </summary>
    private static JsonNode? Parent(JsonObject document, string[] segments, string path, string op, bool create)
    {
        JsonNode container = document;
        for (var i = 0; i < segments.Length - 1; i++)
        {
            var segment = segments[i];
            var next = Read(container, segment, path, op);
            if (DocumentFields.IsNull(next))
            {
                if (!create) return null;
                next = new JsonObject();
                Assign(container, segment, path, op, next);
            }
            if (next is not (JsonObject or JsonArray))
                throw Problems.BadRequest($"{op}: cannot reach '{path}': '{string.Join('.', segments[..(i + 1)])}' is {JsonValues.Describe(next)}, not an object");
            container = next!;
        }
        return container;
    }

    private static JsonNode? Read(JsonNode container, string segment, string? path = null, string? op = null)
    {
        if (container is JsonObject obj) return obj[segment];
        var array = (JsonArray)container;
        if (int.TryParse(segment, out var i) && i >= 0 && i < array.Count) return array[i];
        if (path is not null && !int.TryParse(segment, out _))
            throw Problems.BadRequest($"{op}: cannot reach '{path}': '{segment}' is not an index of an array");
        return null;
    }

    private static void Assign(JsonNode container, string segment, string path, string op, JsonNode? value)
    {
        if (container is JsonObject obj) { obj[segment] = value; return; }
        var array = (JsonArray)container;
        if (!int.TryParse(segment, out var i) || i < 0 || i > array.Count)
            throw Problems.BadRequest($"{op}: '{path}': index '{segment}' is outside the array (length {array.Count})");
        if (i == array.Count) array.Add(value);
        else array[i] = value;
    }

    private static string Show(JsonNode? node) => node?.ToJsonString() ?? "nothing";
}
