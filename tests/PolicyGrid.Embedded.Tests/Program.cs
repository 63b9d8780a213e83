namespace PolicyGrid.Embedded.Tests;

/// <summary>
/// The test executable's entry point: the xunit runner, plus a "durability-writer" mode that the
/// durability test starts as a child process and kills mid-stream.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == DurabilityWriter.Mode)
            return DurabilityWriter.RunAsync(args[1]).GetAwaiter().GetResult();
        if (args.Length == 2 && args[0] == DurabilityWriter.ContextMode)
            return DurabilityWriter.CountInContextAsync(args[1]).GetAwaiter().GetResult();
        if (args.Any(a => a is "--server" or "--internal-msbuild-node"))
            return Xunit.MicrosoftTestingPlatform.TestPlatformTestFramework.RunAsync(args, SelfRegisteredExtensions.AddSelfRegisteredExtensions).GetAwaiter().GetResult();
        return Xunit.Runner.InProc.SystemConsole.ConsoleRunner.Run(args).GetAwaiter().GetResult();
    }
}
