using System.CommandLine;
using System.CommandLine.Parsing;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// What a command line got wrong, in the words of the verb's options and arguments. The parser's own messages named
/// .NET types ("as expected type 'System.Nullable`1[System.Int32]'"), the command instead of the missing argument
/// ("Required argument missing for command: 'manage'"), and took a misspelt option for an argument's value
/// (<c>policy query --lmit 3</c> said only "Unrecognized command or argument '3'"; <c>policy get --jsn</c> asked the
/// server for a policy named "--jsn").
/// </summary>
public static class UsageMistakes
{
    /// <summary>The mistakes, one line each; empty when the command line is fine to run.</summary>
    public static IReadOnlyList<string> Of(ParseResult parsed, IReadOnlyList<string> args)
    {
        var command = parsed.CommandResult;
        // After "--" every word is an argument by request, even one starting with a dash.
        var unknown = args.Contains("--") ? [] : parsed.UnmatchedTokens
            .Concat(command.Children.OfType<ArgumentResult>().SelectMany(a => a.Tokens).Select(t => t.Value))
            .Where(LooksLikeOption)
            .Distinct()
            .Select(token => UnknownOption(token, [.. Options(command)]))
            .ToList();
        // The other errors then follow from it (the option's value left over as an unknown word).
        if (unknown.Count > 0) return unknown;
        // The parser said "Required command was not provided" and "Unrecognized command or argument 'x'" for one mistake.
        if (parsed.UnmatchedTokens.Count > 0 && command.Command.Subcommands.Count > 0)
            return [$"unknown command '{parsed.UnmatchedTokens[0]}'; '{CommandPath(command)}' has: {Verbs(command)}"];
        return [.. parsed.Errors.Select(Worded).Distinct()];
    }

    private static string Verbs(CommandResult command) => string.Join(", ", command.Command.Subcommands.Select(c => c.Name));

    /// <summary>The words that run <paramref name="result"/>'s command, e.g. "policygrid policy push".</summary>
    public static string CommandPath(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is not null; r = r.Parent)
            if (r is CommandResult c) names.Add(c.Command is RootCommand ? "policygrid" : c.Command.Name);
        names.Reverse();
        return string.Join(' ', names);
    }

    // Told by what the result holds, not by the parser's message, which is translated for the user's language.
    private static string Worded(ParseError error) => error.SymbolResult switch
    {
        OptionResult { Tokens.Count: > 0 } o when Kind(o.Option.ValueType, o.Tokens[^1].Value) is { } kind => $"{o.Option.Name} takes {kind}, not '{o.Tokens[^1].Value}'",
        ArgumentResult { Tokens.Count: > 0 } a when Kind(a.Argument.ValueType, a.Tokens[^1].Value) is { } kind => $"<{a.Argument.Name}> takes {kind}, not '{a.Tokens[^1].Value}'",
        ArgumentResult { Tokens.Count: 0, Argument: { Arity.MinimumNumberOfValues: > 0 } a } =>
            string.IsNullOrEmpty(a.Description) ? $"missing <{a.Name}>" : $"missing <{a.Name}>: {a.Description}",
        CommandResult { Command.Subcommands.Count: > 0 } c => $"'{CommandPath(c)}' needs a command: {Verbs(c)}",
        _ => error.Message,
    };

    /// <summary>What a number option takes, when <paramref name="token"/> is not that; null otherwise (the error was about something else).</summary>
    private static string? Kind(Type type, string token)
    {
        var t = Nullable.GetUnderlyingType(type) ?? type;
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        if (t == typeof(int)) return int.TryParse(token, invariant, out _) ? null : "a whole number";
        if (t == typeof(double)) return double.TryParse(token, invariant, out _) ? null : "a number";
        return null;
    }

    private static bool LooksLikeOption(string token) => token.Length > 1 && token[0] == '-' && (char.IsLetter(token[1]) || token[1] == '-');

    private static string UnknownOption(string token, IReadOnlyList<Option> known)
    {
        var name = token.Split('=', 2)[0];
        var closest = known.SelectMany(o => o.Aliases.Prepend(o.Name)).Where(a => a.StartsWith("--", StringComparison.Ordinal))
            .Select(a => (Alias: a, Distance: EditDistance(name, a))).Where(c => c.Distance <= 2).OrderBy(c => c.Distance).Select(c => c.Alias).FirstOrDefault();
        return closest is null ? $"unknown option '{name}'" : $"unknown option '{name}'; did you mean '{closest}'?";
    }

    /// <summary>The command's own options and those its ancestors pass down (--server, --json, ...).</summary>
    private static IEnumerable<Option> Options(CommandResult command)
    {
        foreach (var option in command.Command.Options) yield return option;
        for (var parent = command.Parent; parent is not null; parent = parent.Parent)
            if (parent is CommandResult c)
                foreach (var option in c.Command.Options.Where(o => o.Recursive)) yield return option;
    }

    private static int EditDistance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var current = new int[b.Length + 1];
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            previous = current;
        }
        return previous[b.Length];
    }
}
