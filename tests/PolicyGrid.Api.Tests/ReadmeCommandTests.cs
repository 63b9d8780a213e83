using System.Diagnostics;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>What the README's commands rely on that no in-process test sees.</summary>
public sealed class ReadmeCommandTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // The README aliases `policygrid` to `dotnet run --project src/PolicyGrid.Cli --` and then passes paths relative to
    // the repository root (`policygrid policy push samples/policies/ip_allowlist`). `dotnet run` starts a web project in
    // the project's own folder unless RunWorkingDirectory says otherwise, and then every such path failed.
    [Fact]
    public async Task Dotnet_run_starts_the_cli_in_the_directory_it_was_typed_in()
    {
        var project = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(Samples.Policy("ip_allowlist")))!, "..", "src", "PolicyGrid.Cli", "PolicyGrid.Cli.csproj");
        File.Exists(project).ShouldBeTrue(project);
        var caller = Directory.CreateTempSubdirectory("pg-run-").FullName;
        try
        {
            var start = new ProcessStartInfo("dotnet") { WorkingDirectory = caller, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "msbuild", Path.GetFullPath(project), "-getProperty:RunWorkingDirectory" }) start.ArgumentList.Add(a);
            // The test host's own MSBuild settings must not leak into the child's evaluation.
            foreach (var name in new[] { "MSBuildExtensionsPath", "MSBUILD_EXE_PATH", "MSBuildSDKsPath" }) start.Environment.Remove(name);
            using var process = Process.Start(start)!;
            var output = await process.StandardOutput.ReadToEndAsync(Ct);
            var error = await process.StandardError.ReadToEndAsync(Ct);
            await process.WaitForExitAsync(Ct);
            process.ExitCode.ShouldBe(0, output + error);
            Path.TrimEndingDirectorySeparator(output.Trim()).ShouldBe(caller);
        }
        finally
        {
            Directory.Delete(caller, recursive: true);
        }
    }
}
