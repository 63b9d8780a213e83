using System.Text;
using System.Text.RegularExpressions;

namespace PolicyGrid.Core.Templates;

/// <summary>
/// A template <c>pattern</c> as JSON Schema reads it (ECMA-262, no flags), run on .NET's engine. The contract promises
/// JSON Schema's reading, and .NET's own differs where it matters for validation: <c>\d</c> and <c>\w</c> match any
/// Unicode digit or letter, <c>$</c> also matches before a final "\n" and <c>.</c> also matches "\r", so
/// <c>^\d{1,3}(\.\d{1,3}){3}$</c> let "10.0.0.1\n" and Arabic-Indic digits through.
/// </summary>
/// <remarks>
/// <see cref="RegexOptions.ECMAScript"/> gives ECMA-262's <c>\d</c>, <c>\w</c>, <c>\s</c> (ASCII; ECMA-262's <c>\s</c>
/// also holds Unicode spaces such as U+00A0, which .NET's does not) and its octal and backreference rules. It refuses no
/// pattern .NET's default syntax accepts (it only accepts more escapes, such as <c>\8</c>), and .NET's extensions
/// (lookbehind, atomic groups, <c>\p{..}</c>, inline options) keep working. It leaves <c>$</c> and <c>.</c> as they
/// are, so <see cref="Translate"/> rewrites those two: outside character classes, an unescaped <c>$</c> becomes
/// <c>\z</c> (end of input only) and an unescaped <c>.</c> becomes <c>[^\n\r\u2028\u2029]</c> (ECMA-262's line
/// terminators). A pattern that turns on .NET's inline <c>(?m)</c> or <c>(?s)</c> asked for .NET's meaning of
/// those two and is left as written.
/// </remarks>
public static class SchemaPattern
{
    public const RegexOptions Options = RegexOptions.ECMAScript | RegexOptions.CultureInvariant;

    private const string EndOfInput = @"\z";
    private const string AnyButLineTerminator = @"[^\n\r\u2028\u2029]";

    /// <summary>The .NET pattern that matches what <paramref name="pattern"/> matches under ECMA-262 (see the remarks).</summary>
    public static string Translate(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        if (pattern.AsSpan().IndexOfAny('$', '.') < 0) return pattern;
        var result = new StringBuilder(pattern.Length + 16);
        var i = 0;
        while (i < pattern.Length)
        {
            var c = pattern[i];
            switch (c)
            {
                case '\\':
                    // An escape is two characters (\$, \., \\); longer ones (\u0024, \p{..}, \k<..>) hold no '$' or '.'.
                    result.Append(pattern, i, Math.Min(2, pattern.Length - i));
                    i += 2;
                    continue;
                case '[':
                    var end = ClassEnd(pattern, i);
                    result.Append(pattern, i, end - i);
                    i = end;
                    continue;
                case '(' when At(pattern, i + 1, '?') && At(pattern, i + 2, '#'):
                    // A comment runs to the first ')'.
                    var close = pattern.IndexOf(')', i);
                    if (close < 0) close = pattern.Length - 1;
                    result.Append(pattern, i, close + 1 - i);
                    i = close + 1;
                    continue;
                case '(' when At(pattern, i + 1, '?') && SetsLineOptions(pattern, i + 2):
                    return pattern;
                case '$':
                    result.Append(EndOfInput);
                    break;
                case '.':
                    result.Append(AnyButLineTerminator);
                    break;
                default:
                    result.Append(c);
                    break;
            }
            i++;
        }
        return result.ToString();
    }

    private static bool At(string s, int i, char c) => i < s.Length && s[i] == c;

    /// <summary>
    /// True when the inline options starting after the "(?" at <paramref name="i"/> (<c>(?ms-ix)</c> or
    /// <c>(?ms-ix:...)</c>) turn on <c>m</c> or <c>s</c>, which give <c>$</c> and <c>.</c> .NET's other meanings.
    /// </summary>
    private static bool SetsLineOptions(string pattern, int i)
    {
        var start = i;
        var on = true;
        var lines = false;
        for (; i < pattern.Length && pattern[i] is 'i' or 'm' or 'n' or 's' or 'x' or 'I' or 'M' or 'N' or 'S' or 'X' or '-' or '+'; i++)
        {
            if (pattern[i] == '-') on = false;
            else if (pattern[i] == '+') on = true;
            else if (on && pattern[i] is 'm' or 'M' or 's' or 'S') lines = true;
        }
        return lines && i > start && i < pattern.Length && pattern[i] is ')' or ':';
    }

    /// <summary>
    /// Where the character class opening at <paramref name="open"/> ends (just past its ']'), read as .NET reads it: a ']'
    /// right after "[" or "[^" is a literal (except "[^]", ECMAScript's "any character"), "\" escapes the next
    /// character, and "-[" after the first character opens a subtracted class. An unclosed class runs to the end (the
    /// engine refuses it).
    /// </summary>
    private static int ClassEnd(string pattern, int open)
    {
        var i = open + 1;
        if (At(pattern, i, '^'))
        {
            i++;
            if (At(pattern, i, ']')) return i + 1;
        }
        var first = i;
        if (At(pattern, i, ']')) i++;
        while (i < pattern.Length)
        {
            var c = pattern[i];
            if (c == '\\') i += 2;
            else if (c == ']') return i + 1;
            else if (c == '-' && i > first && At(pattern, i + 1, '[')) i = ClassEnd(pattern, i + 1);
            else i++;
        }
        return pattern.Length;
    }
}
