using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// What client verbs need from the outside world: a console for people, a plain writer for
/// <c>--json</c>, and a way to reach a server. Tests pass recording writers and an HttpClient wired
/// to an in-memory server.
/// </summary>
public sealed record CliEnvironment(IAnsiConsole Console, TextWriter Out, TextWriter Error, Func<Uri, HttpClient> HttpClientFor)
{
    public static CliEnvironment FromConsole() =>
        // Piped output has no terminal width; a wide plain console keeps URIs in tables whole.
        new(System.Console.IsOutputRedirected ? PlainConsole(System.Console.Out) : AnsiConsole.Console, System.Console.Out, System.Console.Error,
            server => new HttpClient { BaseAddress = server, Timeout = TimeSpan.FromMinutes(10) });

    /// <summary>A non-interactive, colourless console over <paramref name="writer"/> (tests, pipes).</summary>
    public static IAnsiConsole PlainConsole(TextWriter writer, int width = 200)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        console.Profile.Width = width;
        return console;
    }
}
