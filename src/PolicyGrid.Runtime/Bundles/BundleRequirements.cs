using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Bundles;

/// <summary>
/// Installs a bundle's <c>code/requirements.txt</c> with pip into a site-packages directory of its own
/// (<c>pip install --target</c>, so it is relocatable and needs no interpreter of its own), with the
/// operator's pip options (e.g. <c>--no-index --find-links /srv/wheels</c>). A requirement pip cannot
/// satisfy is the caller's 400, naming it.
/// </summary>
public sealed partial class BundleRequirements(BundleCacheOptions options)
{
    public async Task InstallAsync(string requirementsFile, string target, CancellationToken ct)
    {
        var start = new ProcessStartInfo(options.PythonExecutable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--no-cache-dir", "--no-compile", "--target", target, "--requirement", requirementsFile })
            start.ArgumentList.Add(a);
        foreach (var a in options.PipOptions) start.ArgumentList.Add(a);
        // pip must not pick up the server's own configuration or credentials from the environment.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("PIP_", StringComparison.OrdinalIgnoreCase)).ToList()) start.Environment.Remove(key);
        start.Environment["PYTHONDONTWRITEBYTECODE"] = "1";

        Process process;
        try { process = Process.Start(start)!; }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw Problems.BadRequest($"the bundle has a requirements.txt but this server cannot run pip ({options.PythonExecutable}: {e.Message})");
        }
        using (process)
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
            deadline.CancelAfter(options.PipTimeout);
            var stdout = process.StandardOutput.ReadToEndAsync(deadline.Token);
            var stderr = process.StandardError.ReadToEndAsync(deadline.Token);
            try { await process.WaitForExitAsync(deadline.Token); }
            catch (OperationCanceledException)
            {
                try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                ct.ThrowIfCancellationRequested();
                throw Problems.BadRequest($"installing the bundle's requirements.txt took longer than {options.PipTimeout.TotalSeconds} s");
            }
            if (process.ExitCode == 0) return;
            var output = new StringBuilder().Append(await stdout).Append('\n').Append(await stderr).ToString();
            throw Problems.BadRequest(Explain(output));
        }
    }

    /// <summary>Names the requirement pip could not install, from its output.</summary>
    public static string Explain(string pipOutput)
    {
        ArgumentNullException.ThrowIfNull(pipOutput);
        if (NoDistribution().Match(pipOutput) is { Success: true } m)
            return $"requirements.txt: no installable distribution found for '{m.Groups[1].Value.Trim()}' (pip could not find it in the configured package sources)";
        if (NotSatisfied().Match(pipOutput) is { Success: true } s)
            return $"requirements.txt: could not satisfy the requirement '{s.Groups[1].Value.Trim()}'";
        if (InvalidRequirement().Match(pipOutput) is { Success: true } i)
            return $"requirements.txt: invalid requirement {i.Groups[1].Value.Trim()}";
        var error = pipOutput.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith("ERROR:", StringComparison.Ordinal));
        return "requirements.txt could not be installed: " + (error ?? pipOutput.Trim().Split('\n').LastOrDefault() ?? "pip failed");
    }

    [GeneratedRegex(@"No matching distribution found for ([^\r\n]+)")]
    private static partial Regex NoDistribution();

    [GeneratedRegex(@"Could not find a version that satisfies the requirement ([^\s(]+)")]
    private static partial Regex NotSatisfied();

    [GeneratedRegex(@"Invalid requirement: ([^\r\n]+)")]
    private static partial Regex InvalidRequirement();
}
