using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// What client verbs need from the outside world: somewhere to write, and a way to reach a server.
/// Tests pass a console that records and an HttpClient wired to an in-memory server.
/// </summary>
public sealed record CliEnvironment(IAnsiConsole Out, TextWriter Error, Func<Uri, HttpClient> HttpClientFor)
{
    public static CliEnvironment FromConsole() =>
        new(AnsiConsole.Console, Console.Error, server => new HttpClient { BaseAddress = server, Timeout = TimeSpan.FromMinutes(10) });
}
