using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// The orderings and the regex test Core uses, made available to SQL so that pushed-down comparisons,
/// sorts and $regex agree with <see cref="FilterNode.Matches"/> to the character (SQLite's own BINARY
/// order is UTF-8 bytes, which differs from .NET's ordinal UTF-16 order for some characters).
/// </summary>
internal static class SqliteCollations
{
    public const string Ordinal = "pg_ordinal";
    public const string Version = "pg_version";
    public const string JsonOrder = "pg_json_order";
    public const string JsonVersionOrder = "pg_json_version_order";

    /// <summary>
    /// Registers the orderings, and <c>pg_regex</c> bound to this query's <paramref name="budget"/>. SQLite turns an
    /// exception thrown inside a function into an error with only its message, so the exception itself is handed to
    /// <paramref name="failed"/> for the caller to throw as it was (a 400 naming the pattern or the budget, or the
    /// caller's cancellation).
    /// </summary>
    public static void Register(SqliteConnection connection, FilterBudget budget, Action<Exception> failed)
    {
        connection.CreateCollation(Ordinal, string.CompareOrdinal);
        connection.CreateCollation(Version, VersionComparer.Instance.Compare);
        connection.CreateCollation(JsonOrder, (a, b) => SortCompare(a, b, asVersion: false));
        connection.CreateCollation(JsonVersionOrder, (a, b) => SortCompare(a, b, asVersion: true));
        // The pattern and the value arrive as BLOBs of their UTF-8 (SqlFilter binds and casts them so): as TEXT, SQLite
        // hands .NET only the part before a NUL, so "^a$" would match a stored "a\u0000b", and "\u0000" be "".
        connection.CreateFunction<object, string, object?, bool>("pg_regex", (pattern, options, value) =>
        {
            var s = Utf8Text(value);
            if (s is null) return false;
            try { return budget.IsMatch(FieldMatcher.Compile(Utf8Text(pattern) ?? "", options), s); }
            catch (Exception e) when (e is PolicyGridException or OperationCanceledException)
            {
                failed(e);
                throw;
            }
        }, isDeterministic: true);
        connection.CreateFunction<string, string?, string, bool>("pg_number", CompareNumber, isDeterministic: true);
    }

    private static string? Utf8Text(object? value) => value switch { byte[] utf8 => Encoding.UTF8.GetString(utf8), string text => text, _ => null };

    /// <summary>Core's number comparison for the few values SQLite's int64/double view could misjudge.</summary>
    private static bool CompareNumber(string op, string? valueJson, string operandJson)
    {
        if (valueJson is null) return false; // nothing there (SQLite may evaluate this before the type test)
        var value = JsonNode.Parse(valueJson);
        var operand = JsonNode.Parse(operandJson);
        if (op == "=") return JsonValues.DeepEquals(value, operand);
        return JsonValues.Compare(value, operand, asVersion: false) is { } c && op switch
        {
            ">" => c > 0,
            ">=" => c >= 0,
            "<" => c < 0,
            "<=" => c <= 0,
            _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown comparison"),
        };
    }

    /// <summary>
    /// Core's SortCompare on two JSON texts. Sorting calls this n·log n times, so two plain strings (no
    /// escapes) are compared without parsing: their JSON text between the quotes is the string itself.
    /// </summary>
    private static int SortCompare(string a, string b, bool asVersion)
    {
        if (IsPlainString(a) && IsPlainString(b))
        {
            var x = a[1..^1];
            var y = b[1..^1];
            return asVersion ? VersionComparer.Instance.Compare(x, y) : string.CompareOrdinal(x, y);
        }
        return JsonValues.SortCompare(JsonNode.Parse(a), JsonNode.Parse(b), asVersion);
    }

    private static bool IsPlainString(string json) =>
        json.Length >= 2 && json[0] == '"' && json[^1] == '"' && json.IndexOf('\\', StringComparison.Ordinal) < 0;
}
