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
            Out = new AnsiConsoleOutput(new LineEndTrimmingWriter(writer)),
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        console.Profile.Width = width;
        return console;
    }
}

/// <summary>
/// Drops the spaces before each line end: tables and grids pad their last column to the console's width, which
/// on a 200-column plain console left every line of <c>policy get | grep</c> output with up to 200 trailing spaces.
/// </summary>
internal sealed class LineEndTrimmingWriter(TextWriter inner) : TextWriter
{
    private int pendingSpaces;

    public override System.Text.Encoding Encoding => inner.Encoding;

    public override void Write(char value)
    {
        if (value == ' ')
        {
            pendingSpaces++;
            return;
        }
        if (value is not ('\n' or '\r') && pendingSpaces > 0) inner.Write(new string(' ', pendingSpaces));
        pendingSpaces = 0;
        inner.Write(value);
    }

    public override void Write(string? value)
    {
        foreach (var c in value ?? "") Write(c);
    }

    public override void Flush() => inner.Flush();
}
