using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// The client side of <c>policygrid</c>. Each verb group lives in its own file and is added here
/// with one line, so other areas (jobs, functions, graphs) bring their verbs without touching the rest.
/// </summary>
public static class CliApp
{
    public static RootCommand BuildRoot(CliEnvironment env)
    {
        var root = new RootCommand("PolicyGrid: register, discover and run versioned policies.\n`policygrid serve` runs the server; the other verbs talk to a running one.\n"
            + "Exit codes: 0 done; 1 the server refused, or the policy or job failed (the message is printed); 2 a usage mistake; "
            + "3 the server cannot be reached or did not answer within --http-timeout; 4 `job wait --timeout` gave up while the job still runs; "
            + "130 interrupted (Ctrl-C).");
        root.Add(new Command("serve", "Run the embedded server (options: --urls, --data <dir>, --insecure; see docs/api.md)."));
        CliCommon.AddGlobalOptions(root);
        root.Add(PolicyCommands.Create(env));
        root.Add(ExecutorCommands.Create(env));
        root.Add(EvalCommand.Create(env));
        root.Add(JobCommands.Create(env));
        root.Add(FunctionCommands.Create(env));
        root.Add(GraphCommands.Create(env));
        root.Add(BackupCommand.Create(env));
        return root;
    }

    /// <summary>Runs one command line. <paramref name="cancellation"/> is Ctrl-C's, for tests: the console's SIGINT and SIGTERM cancel it too.</summary>
    public static async Task<int> RunAsync(string[] args, CliEnvironment env, CancellationToken cancellation = default)
    {
        var root = BuildRoot(env);
        // No response files: "@path" is a JSON option's file (CliCommon.ParseJson), not words to splice into the command line.
        var parsed = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        var mistakes = UsageMistakes.Of(parsed, args);
        if (parsed.Action is ParseErrorAction || mistakes.Count > 0)
        {
            // An unknown verb or option, a missing argument: a usage mistake (exit 2, as docs/api.md says), told on
            // stderr alone, so stdout stays empty (or valid JSON with --json) whatever went wrong.
            foreach (var mistake in mistakes) env.Error.WriteLine($"error: {mistake}");
            env.Error.WriteLine($"see '{UsageMistakes.CommandPath(parsed.CommandResult)} --help'");
            return CliCommon.UsageError;
        }
        // Ctrl-C cancels the verb's token, so it ends as CliCommon.SetRun says (exit 130, the job it leaves running named)
        // and a spinner puts the terminal's cursor back; without a timeout set, SIGINT killed the CLI where it stood.
        return await parsed.InvokeAsync(new InvocationConfiguration { Output = env.Out, Error = env.Error, ProcessTerminationTimeout = TimeSpan.FromSeconds(2) }, cancellation);
    }
}
