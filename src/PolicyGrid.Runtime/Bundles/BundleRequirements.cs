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
        // pip runs as the server, not as a worker: what a bundle may ask of it is kept to naming packages. Options in
        // the file (-r /etc/shadow, --index-url of the writer's own), URLs and paths, and ${VARIABLES} (which pip
        // fills from its environment) let any writer read the server's files and secrets through pip's error
        // message, or run code of their choosing as the server.
        CheckRequirements(requirementsFile);
        var start = new ProcessStartInfo(options.PythonExecutable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // Wheels only: building a source distribution runs its setup code, as the server. The operator's PipOptions
        // come after, so `--only-binary=:none:` there allows builds again.
        foreach (var a in new[] { "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--no-cache-dir", "--no-compile", "--only-binary=:all:", "--target", target, "--requirement", requirementsFile })
            start.ArgumentList.Add(a);
        foreach (var a in options.PipOptions) start.ArgumentList.Add(a);
        // pip gets what it needs to reach a package index and nothing else of the server's environment (tokens, keys),
        // nor the server's own pip configuration or credentials (PIP_*).
        var kept = start.Environment.Where(e => PipEnvironment.Contains(e.Key)).ToList();
        start.Environment.Clear();
        foreach (var (key, value) in kept) start.Environment[key] = value;
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
            throw Refusal(output);
        }
    }

    /// <summary>
    /// What a failed pip run answers: the server's disk refusing pip's writes (full, over quota, read-only) is the
    /// server's 503, as any write of the bundle cache is (<see cref="DiskFailures"/>); anything else is the bundle's
    /// requirements, a 400 saying which (<see cref="Explain"/>).
    /// </summary>
    public static PolicyGridException Refusal(string pipOutput)
    {
        ArgumentNullException.ThrowIfNull(pipOutput);
        if (DiskRefused().Match(pipOutput) is { Success: true } d
            && DiskFailures.Of(new IOException(d.Groups[2].Value, int.Parse(d.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))) is { } disk)
            return disk;
        return Problems.BadRequest(Explain(pipOutput));
    }

    private static readonly HashSet<string> PipEnvironment = new(StringComparer.Ordinal)
    {
        "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
        "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    };

    /// <summary>
    /// 400 naming the first line of <paramref name="requirementsFile"/> that is not a plain requirement: a project
    /// name, optional extras, version specifiers and environment markers, optionally followed by <c>--hash</c> pins.
    /// </summary>
    public static void CheckRequirements(string requirementsFile)
    {
        var number = 0;
        var logical = new StringBuilder();
        var first = 0;
        foreach (var raw in File.ReadLines(requirementsFile))
        {
            number++;
            if (logical.Length == 0) first = number;
            // pip joins a line ending in a backslash with the next before anything else.
            if (raw.EndsWith('\\'))
            {
                logical.Append(raw, 0, raw.Length - 1);
                continue;
            }
            logical.Append(raw);
            var line = Comment().Replace(logical.ToString(), "").Trim();
            logical.Clear();
            if (line.Length > 0 && !PlainRequirement().IsMatch(line))
                throw Problems.BadRequest($"requirements.txt line {first}: '{(line.Length <= 120 ? line : line[..100] + "…")}' is not a plain requirement " +
                    "(a package name with optional [extras], version specifiers, '; markers' and --hash pins); pip options, URLs, " +
                    "paths and ${VARIABLES} are not allowed in a bundle's requirements");
        }
    }

    // A comment: '#' at the start or after whitespace, to the end of the line (pip's rule).
    [GeneratedRegex(@"(^|\s)#.*$")]
    private static partial Regex Comment();

    // PEP 508 name, [extras], specifiers, '; markers' (quoted values without $ @ / \), then --hash=algo:hex options.
    [GeneratedRegex("""^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\s*(?:\[\s*[A-Za-z0-9._-]+(?:\s*,\s*[A-Za-z0-9._-]+)*\s*\])?\s*(?:\(?\s*(?:(?:===|==|!=|~=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)+\)?)?\s*(?:;[A-Za-z0-9_.<>=!~'"\s(),-]*)?(?:\s+--hash[=\s][A-Za-z0-9]+:[0-9A-Fa-f]+)*$""")]
    private static partial Regex PlainRequirement();

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

    // pip reports an OSError as "[Errno 28] No space left on device: '<path>'" (the path left out).
    [GeneratedRegex(@"\[Errno (5|28|30|122)\] ([^:\r\n]+)")]
    private static partial Regex DiskRefused();

    [GeneratedRegex(@"No matching distribution found for ([^\r\n]+)")]
    private static partial Regex NoDistribution();

    [GeneratedRegex(@"Could not find a version that satisfies the requirement ([^\s(]+)")]
    private static partial Regex NotSatisfied();

    [GeneratedRegex(@"Invalid requirement: ([^\r\n]+)")]
    private static partial Regex InvalidRequirement();
}
