using System.Diagnostics;
using System.Globalization;

namespace PolicyGrid.Api.Tests;

/// <summary>The real <c>policygrid</c> CLI (its dll, built next to these tests) as a process of its own, for what only a
/// process shows: exit codes, signals, what it writes, files it watches.</summary>
internal static class CliProcess
{
    /// <summary>Starts <c>dotnet policygrid.dll</c> with <paramref name="args"/>, its standard output and error redirected.</summary>
    public static Process Start(IEnumerable<string> args, string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        if (workingDirectory is not null) start.WorkingDirectory = workingDirectory;
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "policygrid.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        return Process.Start(start)!;
    }

    /// <summary>Reads a started <c>serve</c>'s standard output up to the line saying it listens; answers what it read.</summary>
    public static async Task<string> UntilListeningAsync(Process serve, CancellationToken ct)
    {
        var output = new System.Text.StringBuilder();
        while (await serve.StandardOutput.ReadLineAsync(ct) is { } line)
        {
            output.AppendLine(line);
            if (line.Contains("PolicyGrid listening on", StringComparison.Ordinal)) break;
        }
        return output.ToString();
    }

    /// <summary>Sends signal <paramref name="name"/> (TERM, HUP, ...) to <paramref name="process"/> with kill(1).</summary>
    public static async Task SignalAsync(Process process, string name, CancellationToken ct)
    {
        using var kill = Process.Start("kill", [$"-{name}", process.Id.ToString(CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync(ct);
    }
}
