using System.CommandLine;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// The client side of <c>policygrid</c>. Each verb group lives in its own file and is added here
/// with one line, so other areas (jobs, functions, graphs) bring their verbs without touching the rest.
/// </summary>
public static class CliApp
{
    public static RootCommand BuildRoot(CliEnvironment env)
    {
        var root = new RootCommand("PolicyGrid: register, discover and run versioned policies.\n`policygrid serve` runs the server; the other verbs talk to a running one.");
        root.Add(new Command("serve", "Run the embedded server (options: --urls, --data <dir>, --insecure; see docs/api.md)."));
        CliCommon.AddGlobalOptions(root);
        root.Add(PolicyCommands.Create(env));
        root.Add(ExecutorCommands.Create(env));
        root.Add(EvalCommand.Create(env));
        root.Add(JobCommands.Create(env));
        root.Add(FunctionCommands.Create(env));
        root.Add(GraphCommands.Create(env));
        return root;
    }

    public static async Task<int> RunAsync(string[] args, CliEnvironment env)
    {
        var root = BuildRoot(env);
        var parsed = root.Parse(args);
        return await parsed.InvokeAsync(new InvocationConfiguration { Output = env.Out, Error = env.Error });
    }
}
