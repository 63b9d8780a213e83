using PolicyGrid.Cli.Commands;

namespace PolicyGrid.Cli;

/// <summary>
/// The <c>policygrid</c> command. <c>serve</c> runs the embedded server; every other verb is a client
/// of a running server. Host options alone (<c>--key=value</c>, as WebApplicationFactory passes them)
/// imply <c>serve</c>, so tests and <c>serve</c> share one composition.
/// </summary>
public partial class Program
{
    public static Task<int> Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "serve") return PolicyGridApp.ServeAsync(args[1..]);
        if (args.Length > 0 && args[0] == "job-run") return Jobs.JobRunCommand.RunAsync(args[1..]);
        if (args.Length > 0 && args[0].StartsWith("--", StringComparison.Ordinal) && args[0].Contains('=', StringComparison.Ordinal))
            return PolicyGridApp.ServeAsync(args);
        return CliApp.RunAsync(args, CliEnvironment.FromConsole());
    }
}
