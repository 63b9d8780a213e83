using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Identity;

/// <summary>
/// What every identifier that appears in a URL path must not hold (URI parts, executor, function and job ids):
/// whitespace, '/', '%' (a path's '%' is always an escape: an id holding one could not be addressed both
/// unescaped and %-encoded, as the contract promises), control characters such as NUL (refused in paths), and
/// more than <see cref="MaxLength"/> characters (a longer URL is refused by servers and proxies). Nor may it be
/// made only of dots: clients and servers remove the path segments '.' and '..' (also written %2E%2E) before
/// routing, so <c>/executor/..</c> never reaches the executor named "..". Longer runs of dots are refused with them,
/// as some clients treat them alike.
/// </summary>
public static class Identifiers
{
    public const int MaxLength = 256;

    /// <summary>Adds an error per rule <paramref name="value"/> breaks, named <paramref name="field"/>; true when it breaks none.</summary>
    public static bool Check(List<FieldError> errors, string field, string value)
    {
        ArgumentNullException.ThrowIfNull(errors);
        ArgumentNullException.ThrowIfNull(value);
        var before = errors.Count;
        if (value.Length > MaxLength)
        {
            errors.Add(new(field, $"is {value.Length} characters long; at most {MaxLength}"));
            return false; // the others would echo all of it
        }
        // One pass, no allocation: ids are checked on every call that names one.
        bool whitespace = false, control = false;
        foreach (var c in value)
        {
            if (char.IsWhiteSpace(c)) whitespace = true;
            else if (char.IsControl(c)) control = true;
        }
        if (whitespace) errors.Add(new(field, $"'{value}' must not contain whitespace"));
        if (value.Contains('/', StringComparison.Ordinal)) errors.Add(new(field, $"'{value}' must not contain '/'"));
        if (value.Contains('%', StringComparison.Ordinal)) errors.Add(new(field, $"'{value}' must not contain '%'"));
        if (control) errors.Add(new(field, "must not contain control characters (such as NUL)"));
        if (value.Length > 0 && value.AsSpan().IndexOfAnyExcept('.') < 0)
            errors.Add(new(field, $"'{value}' is made only of dots, which a URL path reads as a step between folders, so it could not be addressed"));
        return errors.Count == before;
    }
}
