using System.Diagnostics;
using System.Net;
using System.Text;

namespace PolicyGrid.Dapr.EndToEnd.Tests;

/// <summary>One of our Dapr apps as a real process, started from its own build output.</summary>
public sealed class AppProcess : IAsyncDisposable
{
    private readonly Process process;
    private readonly StringBuilder output = new();

    private AppProcess(Process process, int port)
    {
        this.process = process;
        Port = port;
    }

    public int Port { get; }
    public string Output { get { lock (output) return output.ToString(); } }

    public static async Task<AppProcess> StartAsync(string projectDir, string assembly, int port, IReadOnlyDictionary<string, string> environment, CancellationToken ct)
    {
        var dll = Path.Combine(Repository.Root, projectDir, "bin", Repository.Configuration, "net10.0", assembly + ".dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"{dll} is not built; build tests/PolicyGrid.Dapr.EndToEnd.Tests first", dll);
        var info = new ProcessStartInfo("dotnet", [dll]) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetDirectoryName(dll)! };
        info.Environment["APP_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var (key, value) in environment) info.Environment[key] = value;
        var app = new AppProcess(Process.Start(info)!, port);
        app.process.OutputDataReceived += (_, e) => { lock (app.output) app.output.AppendLine(e.Data); };
        app.process.ErrorDataReceived += (_, e) => { lock (app.output) app.output.AppendLine(e.Data); };
        app.process.BeginOutputReadLine();
        app.process.BeginErrorReadLine();
        await app.WaitHealthyAsync(ct);
        return app;
    }

    private async Task WaitHealthyAsync(CancellationToken ct)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited) throw new InvalidOperationException($"app exited with {process.ExitCode}:\n{Output}");
            try
            {
                if ((await client.GetAsync($"http://127.0.0.1:{Port}/healthz", ct)).StatusCode == HttpStatusCode.OK) return;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) when (!ct.IsCancellationRequested) { }
            await Task.Delay(250, ct);
        }
        throw new TimeoutException($"app on port {Port} did not answer /healthz within 60 s:\n{Output}");
    }

    public async ValueTask DisposeAsync()
    {
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
        process.Dispose();
    }
}

public static class Repository
{
    public static readonly string Root = FindRoot();

    /// <summary>Debug or Release: the configuration this suite was built in, which built the apps too.</summary>
    public static readonly string Configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name is var c && c is "Debug" or "Release" ? c : "Debug";

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "dapr.yaml"))) return dir.FullName;
        throw new InvalidOperationException("no repository root (dapr.yaml) above " + AppContext.BaseDirectory);
    }
}
