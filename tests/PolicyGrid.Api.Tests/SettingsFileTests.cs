using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using System.Net;
using System.Net.Http.Headers;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// The real <c>policygrid serve</c> process reads appsettings.json from the directory it starts in and picks up an
/// edit (token rotation without a restart), without watching every directory below it.
/// </summary>
public sealed class SettingsFileTests
{
    private static string Settings(string token) =>
        $$"""{ "PolicyGrid": { "Auth": { "Tokens": [ { "Name": "ops", "Token": "{{token}}", "Scopes": [ "write" ] } ] } } }""";

    [Fact]
    public async Task Serve_rereads_appsettings_when_it_changes_and_does_not_watch_the_tree_it_starts_in()
    {
        var ct = TestContext.Current.CancellationToken;
        var root = Path.Combine(Path.GetTempPath(), "pg-api-tests", Guid.NewGuid().ToString("N"));
        var cwd = Path.Combine(root, "cwd");
        // A tree below the working directory: the framework's default would put an inotify watch on each of these.
        for (var i = 0; i < 300; i++) Directory.CreateDirectory(Path.Combine(cwd, "tree", $"d{i}"));
        await File.WriteAllTextAsync(Path.Combine(cwd, "appsettings.json"), Settings("first-token-0123456789"), ct);
        var port = LoopbackPorts.Free();
        using var process = CliProcess.Start(["serve", "--urls", $"http://127.0.0.1:{port}", "--data", Path.Combine(root, "data")], cwd);
        var output = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
        try
        {
            await Until(async () => (await Status(http, "healthz", null)) == HttpStatusCode.OK, TimeSpan.FromSeconds(60), () => $"serve did not answer /healthz:\n{output}");

            if (OperatingSystem.IsLinux())
                InotifyWatches(process.Id).ShouldBeLessThan(50, "serve watches the directory tree it was started in");

            (await Status(http, "executor/local", "first-token-0123456789")).ShouldBe(HttpStatusCode.OK);
            (await Status(http, "executor/local", "second-token-0123456789")).ShouldBe(HttpStatusCode.Unauthorized);

            await File.WriteAllTextAsync(Path.Combine(cwd, "appsettings.json"), Settings("second-token-0123456789"), ct);
            await Until(async () => (await Status(http, "executor/local", "second-token-0123456789")) == HttpStatusCode.OK, TimeSpan.FromSeconds(30),
                () => "the rotated token was not accepted after appsettings.json changed");
            (await Status(http, "executor/local", "first-token-0123456789")).ShouldBe(HttpStatusCode.Unauthorized);
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None);
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
        }
    }

    [Fact]
    public async Task Serve_refuses_settings_out_of_range_at_start_naming_each_one()
    {
        var ct = TestContext.Current.CancellationToken;
        var root = Path.Combine(Path.GetTempPath(), "pg-api-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        using var process = CliProcess.Start(["serve", "--urls", $"http://127.0.0.1:{LoopbackPorts.Free()}", "--data", Path.Combine(root, "data")], root,
            new Dictionary<string, string> { ["PolicyGrid__Runtime__Decisions__PruneInterval"] = "00:00:00", ["PolicyGrid__Runtime__Decisions__MaxCount"] = "-5" });
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = await process.StandardError.ReadToEndAsync(ct);
        try
        {
            await process.WaitForExitAsync(ct).WaitAsync(TimeSpan.FromSeconds(60), ct);
            process.ExitCode.ShouldBe(2, stderr);
            var lines = stderr.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            lines.ShouldContain("policygrid serve: bad configuration:", stderr);
            lines.ShouldContain("PolicyGrid:Runtime:Decisions:PruneInterval is 00:00:00; it must be greater than zero", stderr);
            lines.ShouldContain("PolicyGrid:Runtime:Decisions:MaxCount is -5; it must be 0 or more", stderr);
            _ = await stdout;
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
        }
    }

    private static async Task<HttpStatusCode?> Status(HttpClient http, string path, string? token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        try
        {
            using var response = await http.SendAsync(request);
            return response.StatusCode;
        }
        catch (HttpRequestException)
        {
            return null; // not listening yet
        }
    }

    private static async Task Until(Func<Task<bool>> condition, TimeSpan within, Func<string> failure)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > within) throw new ShouldAssertException(failure());
            await Task.Delay(200);
        }
    }

    // inotify watches the process holds: one "inotify wd:" line per watch in its inotify descriptors' fdinfo.
    private static int InotifyWatches(int pid)
    {
        var watches = 0;
        foreach (var fd in Directory.EnumerateFiles($"/proc/{pid}/fdinfo"))
        {
            try { watches += File.ReadLines(fd).Count(l => l.StartsWith("inotify wd:", StringComparison.Ordinal)); }
            catch (IOException) { }
        }
        return watches;
    }
}

public sealed class SettingsFileExposureTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("pg-settings-exposure-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private IConfigurationRoot Load(string name, string json, string mode)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, json);
        using (var chmod = Process.Start("chmod", [mode, path])) chmod.WaitForExit();
        return new ConfigurationBuilder().SetBasePath(dir).AddJsonFile(name).Build();
    }

    [Fact]
    public void A_settings_file_holding_tokens_that_others_can_read_is_named_and_one_only_its_owner_reads_is_not()
    {
        if (OperatingSystem.IsWindows()) return;
        const string Tokens = """{ "PolicyGrid": { "Auth": { "Tokens": [ { "Name": "ops", "Token": "a-token-0123456789", "Scopes": [ "write" ] } ] } } }""";
        PolicyGrid.Cli.Serve.SettingsFileExposure.ReadableByOthers(Load("open.json", Tokens, "644"), "PolicyGrid:Auth:Tokens")
            .ShouldBe([Path.Combine(dir, "open.json")]);
        PolicyGrid.Cli.Serve.SettingsFileExposure.ReadableByOthers(Load("closed.json", Tokens, "600"), "PolicyGrid:Auth:Tokens").ShouldBeEmpty();
        // Readable by all but without tokens: nothing to warn about.
        PolicyGrid.Cli.Serve.SettingsFileExposure.ReadableByOthers(Load("plain.json", """{ "Logging": { "LogLevel": { "Default": "Warning" } } }""", "644"), "PolicyGrid:Auth:Tokens")
            .ShouldBeEmpty();
    }
}
