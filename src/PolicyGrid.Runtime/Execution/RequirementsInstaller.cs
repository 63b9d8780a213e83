using System.Diagnostics;
using System.Text.RegularExpressions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Installs a bundle's code/requirements.txt with pip (<c>--target</c>, into the bundle's own
/// site-packages, which workers put on sys.path) using the interpreter the workers run, and the
/// operator's pip options (e.g. <c>--no-index --find-links</c> for offline servers). A requirement
/// pip cannot satisfy is a 400 that names it.
/// </summary>
public sealed partial class RequirementsInstaller(PythonWorkerPool pool, BundleSourceOptions options)
{
    [GeneratedRegex(@"No matching distribution found for (\S+)")]
    private static partial Regex NoDistribution();

    [GeneratedRegex(@"Could not find a version that satisfies the requirement (\S+)")]
    private static partial Regex NoVersion();

    /// <summary>True when the file names at least one requirement (not only comments and blank lines).</summary>
    public static bool HasRequirements(string path) =>
        File.ReadLines(path).Any(l => l.Trim() is { Length: > 0 } t && !t.StartsWith('#'));

    public async Task InstallAsync(string requirementsFile, string target, CancellationToken ct)
    {
        await pool.StartAsync(ct);
        var start = new ProcessStartInfo(pool.Status.Interpreter)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetDirectoryName(requirementsFile)!,
        };
        foreach (var arg in new[] { "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-compile", "--target", target, "-r", requirementsFile })
            start.ArgumentList.Add(arg);
        foreach (var arg in options.PipOptions) start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw Problems.BackendUnavailable("pip could not be started");
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.InstallTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            if (ct.IsCancellationRequested) throw;
            throw Problems.Validation("code", $"installing code/requirements.txt took longer than {options.InstallTimeout.TotalSeconds:0}s");
        }
        await stdout;
        var errors = await stderr;
        if (process.ExitCode == 0) return;
        var missing = NoDistribution().Match(errors) is { Success: true } m ? m.Groups[1].Value
            : NoVersion().Match(errors) is { Success: true } v ? v.Groups[1].Value : null;
        var lastLine = errors.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? $"pip exited with {process.ExitCode}";
        throw Problems.Validation("code", missing is not null
            ? $"code/requirements.txt: requirement '{missing}' cannot be installed here ({lastLine})"
            : $"code/requirements.txt cannot be installed: {lastLine}");
    }
}
