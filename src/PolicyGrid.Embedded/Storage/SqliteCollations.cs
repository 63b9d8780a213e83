using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
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
    public const string RegexTimeoutMarker = "pg_regex: pattern took too long";

    public static void Register(SqliteConnection connection)
    {
        connection.CreateCollation(Ordinal, string.CompareOrdinal);
        connection.CreateCollation(Version, VersionComparer.Instance.Compare);
        connection.CreateCollation(JsonOrder, (a, b) => JsonValues.SortCompare(Parse(a), Parse(b), asVersion: false));
        connection.CreateCollation(JsonVersionOrder, (a, b) => JsonValues.SortCompare(Parse(a), Parse(b), asVersion: true));
        connection.CreateFunction<string, string, object?, bool>("pg_regex", Regex, isDeterministic: true);
        connection.CreateFunction<string, string?, string, bool>("pg_number", CompareNumber, isDeterministic: true);
    }

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

    private static bool Regex(string pattern, string options, object? value)
    {
        if (value is not string s) return false;
        try { return FieldMatcher.Compile(pattern, options).IsMatch(s); }
        catch (System.Text.RegularExpressions.RegexMatchTimeoutException) { throw new InvalidOperationException(RegexTimeoutMarker); }
    }

    private static JsonNode? Parse(string json) => JsonNode.Parse(json);
}
