using Shouldly;
using PolicyGrid.Cli;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// An operator's mistakes at start (a setting of the wrong type or out of range, a bundle cache that cannot be a
/// directory, a port past 65535) stop <c>serve</c> with exit code 2 and one line naming the setting, never a stack
/// trace (each of these crashed it, exit 134) nor a server that starts and fails every call later.
/// </summary>
public sealed class ServeRefusalTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("pg-serve-refusal-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    private async Task<(int ExitCode, string Error)> Serve(params string[] settings)
    {
        var error = new StringWriter();
        // Without the checks some of these start and serve: give up on them rather than run until the suite ends.
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        patience.CancelAfter(TimeSpan.FromSeconds(60));
        var code = await PolicyGridApp.ServeAsync(
            ["--urls", $"http://127.0.0.1:{LoopbackPorts.Free()}", "--data", Path.Combine(root, Guid.NewGuid().ToString("N")), .. settings],
            TextWriter.Null, error, patience.Token);
        return (code, error.ToString());
    }

    [Theory]
    [InlineData("--PolicyGrid:Runtime:Pool:Workers=abc", "'abc' at 'PolicyGrid:Runtime:Pool:Workers' to type 'System.Int32'")]
    [InlineData("--PolicyGrid:Runtime:Execution:DefaultTimeout=5s", "'5s' at 'PolicyGrid:Runtime:Execution:DefaultTimeout' to type 'System.TimeSpan'")]
    [InlineData("--PolicyGrid:Runtime:Bundles:MaxArchiveBytes=lots", "'lots' at 'PolicyGrid:Runtime:Bundles:MaxArchiveBytes'")]
    public async Task A_setting_of_the_wrong_type_is_one_line_naming_it(string setting, string named)
    {
        var (code, error) = await Serve(setting);

        code.ShouldBe(2, error);
        error.ShouldStartWith("policygrid serve: bad configuration: Failed to convert configuration value ");
        error.ShouldContain(named);
        error.Trim().Split('\n').Length.ShouldBe(1, error);
    }

    [Theory]
    [InlineData("--PolicyGrid:Runtime:Pool:MaxQueue=0", "PolicyGrid:Runtime:Pool:MaxQueue is 0; it must be 1 or more")]
    [InlineData("--PolicyGrid:Runtime:Pool:QueueWait=-00:00:01", "PolicyGrid:Runtime:Pool:QueueWait is -00:00:01; it must be greater than zero")]
    [InlineData("--PolicyGrid:Runtime:Pool:StartTimeout=00:00:00", "PolicyGrid:Runtime:Pool:StartTimeout is 00:00:00; it must be greater than zero")]
    [InlineData("--PolicyGrid:Runtime:Pool:MaxResultBytes=0", "PolicyGrid:Runtime:Pool:MaxResultBytes is 0; it must be 4096 or more")]
    [InlineData("--PolicyGrid:Runtime:Pool:MemoryLimitBytes=-1", "PolicyGrid:Runtime:Pool:MemoryLimitBytes is -1; it must be 1 or more")]
    [InlineData("--PolicyGrid:Api:MaxBodyBytes=-5", "PolicyGrid:Api:MaxBodyBytes is -5; it must be greater than zero")]
    [InlineData("--PolicyGrid:Api:MaxBundleBytes=0", "PolicyGrid:Api:MaxBundleBytes is 0; it must be greater than zero")]
    [InlineData("--PolicyGrid:Runtime:Decisions:WhenUnrecorded=closed",
        "PolicyGrid:Runtime:Decisions:WhenUnrecorded is 'closed'; it must be serve (run calls the decision log cannot record) or refuse (answer them 503)")]
    [InlineData("--PolicyGrid:Runtime:Bundles:KeepUnusedFor=-1.00:00:00", "PolicyGrid:Runtime:Bundles:KeepUnusedFor is -1.00:00:00; it must be zero (never remove unused bundles) or at least 00:01:00")]
    public async Task A_size_or_time_no_call_could_work_with_is_refused_at_start_naming_it(string setting, string named)
    {
        // Each started before: MaxQueue 0 refused every call (429), a negative QueueWait answered 500, StartTimeout 0 and a tiny
        // MaxResultBytes blamed the Python interpreter (503), MemoryLimitBytes -1 meant no limit, MaxBodyBytes -5 refused every body.
        var (code, error) = await Serve(setting);

        code.ShouldBe(2, error);
        error.ShouldStartWith("policygrid serve: bad configuration:");
        error.ShouldContain(named);
    }

    [Fact]
    public async Task A_bundle_cache_directory_that_is_a_file_is_one_line_naming_the_setting()
    {
        var file = Path.Combine(root, "not-a-directory");
        await File.WriteAllTextAsync(file, "x", TestContext.Current.CancellationToken);

        var (code, error) = await Serve($"--PolicyGrid:Runtime:Bundles:CacheDirectory={file}");

        code.ShouldBe(2, error);
        error.ShouldStartWith($"policygrid serve: {file} cannot be used as a directory");
        error.ShouldContain("Set PolicyGrid:Runtime:Bundles:CacheDirectory to a directory this server's user can create and write");
        error.ShouldNotContain("   at ");
    }

    [Fact]
    public async Task A_bundle_cache_directory_another_user_owns_is_one_line_naming_the_setting()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root") Assert.Skip("needs root to give a directory to another user");
        var theirs = Path.Combine(root, "theirs");
        Directory.CreateDirectory(theirs);
        using (var chown = System.Diagnostics.Process.Start("chown", ["65534", theirs])) await chown.WaitForExitAsync(TestContext.Current.CancellationToken);

        var (code, error) = await Serve($"--PolicyGrid:Runtime:Bundles:CacheDirectory={theirs}");

        code.ShouldBe(2, error);
        error.ShouldStartWith($"policygrid serve: {theirs} cannot be trusted with policy code: it belongs to uid 65534");
        error.ShouldContain("Set PolicyGrid:Runtime:Bundles:CacheDirectory");
    }

    [Theory]
    [InlineData("--PolicyGrid:Runtme:Pool:Workers=3", "PolicyGrid:Runtme:Pool:Workers")]
    [InlineData("--PolicyGrid:Runtime:Pool:MemoryLimitByte=1000000", "PolicyGrid:Runtime:Pool:MemoryLimitByte")]
    [InlineData("--PolicyGrid:Runtime:Bundles:Limits:MaxFiles=10", "PolicyGrid:Runtime:Bundles:Limits:MaxFiles")]
    [InlineData("--PolicyGrid:Api:MaxBodyBytes:Extra=1", "PolicyGrid:Api:MaxBodyBytes:Extra")]
    public void A_setting_no_part_of_PolicyGrid_reads_is_refused_naming_it(string setting, string named)
    {
        // A misspelt setting was kept and ignored: the server ran with the default in its place, a limit not in force.
        var refused = Should.Throw<PolicyGrid.Cli.Serve.ServeRefusedException>(() => PolicyGridApp.Build(
            ["--urls", $"http://127.0.0.1:{LoopbackPorts.Free()}", "--data", Path.Combine(root, Guid.NewGuid().ToString("N")), setting]));

        refused.Message.ShouldStartWith($"{named} is no setting PolicyGrid reads (misspelt?");
    }

    [Fact]
    public async Task Settings_of_every_shape_PolicyGrid_reads_are_accepted_lists_and_nested_ones_included()
    {
        await using var app = PolicyGridApp.Build(["--urls", $"http://127.0.0.1:{LoopbackPorts.Free()}", "--data", Path.Combine(root, "accepted"),
            "--policygrid:runtime:pool:workers=1", "--PolicyGrid:Runtime:Pool:ProbeModules:0=json", "--PolicyGrid:Runtime:Bundles:Limits:MaxEntries=100",
            "--PolicyGrid:Runtime:Bundles:PipOptions:0=--no-index", "--PolicyGrid:Runtime:RemoteExecutors:TokenNodes:0=http://node:1",
            "--PolicyGrid:Auth:Tokens:0:Name=ops", "--PolicyGrid:Auth:Tokens:0:Token=ops-token-0123456789", "--PolicyGrid:Auth:Tokens:0:Scopes:0=write",
            "--PolicyGrid:Jobs:Launcher=local", "--PolicyGrid:Jobs:Local:Grace=00:00:05", "--PolicyGrid:Graphs:MaxParallelism=2",
            "--PolicyGrid:Functions:CallTimeout=00:00:10", "--PolicyGrid:Functions:IdleTimeout=00:10:00", "--PolicyGrid:Dapr:BindAddress=127.0.0.1",
            "--PolicyGrid:Jobs:Kubernetes:RunnerImage=x", "--PolicyGrid:Infra:Namespace=pg", "--PolicyGrid:Runtime:Decisions:WhenUnrecorded=refuse"]);
        app.ShouldNotBeNull();
    }

    [Fact]
    public async Task A_port_past_65535_is_refused_naming_the_address()
    {
        var error = new StringWriter();
        var code = await PolicyGridApp.ServeAsync(["--urls", "http://127.0.0.1:99999", "--data", Path.Combine(root, "data")],
            TextWriter.Null, error, TestContext.Current.CancellationToken);

        code.ShouldBe(2, error.ToString());
        error.ToString().ShouldStartWith("policygrid serve: 'http://127.0.0.1:99999' is not an address to listen on: its port 99999 is not 0 to 65535");
    }

    [Theory]
    [InlineData("ftp://127.0.0.1:{0}")]
    [InlineData("ftp://pg.example:{0}")]
    public async Task A_scheme_other_than_http_or_https_is_refused_naming_the_address(string url)
    {
        // ftp://127.0.0.1 crashed serve at bind time with Kestrel's InvalidOperationException and its stack trace (exit 134);
        // ftp://pg.example was refused for want of API tokens.
        var address = string.Format(System.Globalization.CultureInfo.InvariantCulture, url, LoopbackPorts.Free());
        var error = new StringWriter();
        var code = await PolicyGridApp.ServeAsync(["--urls", address, "--data", Path.Combine(root, "data")],
            TextWriter.Null, error, TestContext.Current.CancellationToken);

        code.ShouldBe(2, error.ToString());
        error.ToString().ShouldStartWith($"policygrid serve: '{address}' is not an address to listen on: serve speaks http:// and https:// only");
    }
}

/// <summary>What a running <c>serve</c> does when its data directory goes away under it.</summary>
public sealed class ServeDataDirectoryLossTests
{
    [Theory]
    [InlineData("removed")]
    [InlineData("moved")]
    [InlineData("lock removed")]
    public async Task A_data_directory_removed_or_moved_under_a_running_server_stops_it_with_exit_1_saying_so(string how)
    {
        // It went on answering every write with success while SQLite wrote into the removed files it held open: all of it
        // gone at the next start, and a second server could start on the directory made again in its place.
        if (!OperatingSystem.IsLinux()) Assert.Skip("the server tells where its lock file is through /proc (Linux)");
        var ct = TestContext.Current.CancellationToken;
        var parent = Directory.CreateTempSubdirectory("pg-data-loss-").FullName;
        var data = Path.Combine(parent, "data");
        var port = LoopbackPorts.Free();
        var error = new StringWriter();
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(ct);
        patience.CancelAfter(TimeSpan.FromSeconds(90));
        var serving = PolicyGridApp.ServeAsync(["--urls", $"http://127.0.0.1:{port}", "--data", data], TextWriter.Null, error, patience.Token);
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
            while (true)
            {
                serving.IsCompleted.ShouldBeFalse(error.ToString());
                try
                {
                    using var answer = await http.GetAsync("executor/local", ct);
                    if (answer.IsSuccessStatusCode) break;
                }
                catch (HttpRequestException) { }
                await Task.Delay(50, ct);
            }

            if (how == "removed") Directory.Delete(data, recursive: true);
            else if (how == "moved") Directory.Move(data, data + ".moved");
            // An operator clearing what looked like a stale lock: the data is all there, but a second server could start beside
            // this one. The server stopped as it should, but said the whole directory was removed and what it stored lost.
            else File.Delete(Path.Combine(data, "policygrid.lock"));
            var code = await serving.WaitAsync(TimeSpan.FromSeconds(30), ct);

            code.ShouldBe(1, error.ToString());
            error.ToString().ShouldStartWith(how switch
            {
                "removed" => $"policygrid serve: the data directory {data} was removed while the server ran: what it stored since is lost",
                "moved" => $"policygrid serve: the data directory {data} was moved to {data}.moved while the server ran: its data is there now",
                _ => $"policygrid serve: the lock file {data}/policygrid.lock was removed while the server ran, so a second server could start on {data} "
                    + "beside this one. Stopped, so that one server at a time uses it; nothing stored is lost: start it again",
            });
            error.ToString().ShouldContain("start it again");
        }
        finally
        {
            await patience.CancelAsync();
            try { await serving; } catch (OperationCanceledException) { }
            try { Directory.Delete(parent, recursive: true); } catch (IOException) { }
        }
    }
}

/// <summary>A signal that stops <c>serve</c> is said in its log.</summary>
public sealed class ServeStopSignalTests
{
    [Theory]
    [InlineData("HUP", "SIGHUP")]
    [InlineData("TERM", "SIGTERM")]
    public async Task A_signal_that_stops_the_server_is_named_in_its_log_with_the_time_calls_get(string kill, string named)
    {
        // SIGHUP (a closed terminal, or a "reload") stopped the server without a word in its log.
        if (!OperatingSystem.IsLinux()) Assert.Skip("POSIX signals");
        var ct = TestContext.Current.CancellationToken;
        var data = Directory.CreateTempSubdirectory("pg-signal-").FullName;
        using var process = CliProcess.Start(["serve", "--urls", $"http://127.0.0.1:{LoopbackPorts.Free()}", "--data", data, "--shutdownTimeoutSeconds=7"]);
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(ct);
        patience.CancelAfter(TimeSpan.FromSeconds(90));
        var errors = process.StandardError.ReadToEndAsync(patience.Token);
        try
        {
            var output = new System.Text.StringBuilder(await CliProcess.UntilListeningAsync(process, patience.Token));
            output.ToString().ShouldContain("PolicyGrid listening on");

            await CliProcess.SignalAsync(process, kill, patience.Token);
            output.Append(await process.StandardOutput.ReadToEndAsync(patience.Token));
            await process.WaitForExitAsync(patience.Token);

            process.ExitCode.ShouldBe(0, await errors);
            output.ToString().ShouldContain($"PolicyGrid stopping on {named}: calls in flight get 7 s to finish (--shutdownTimeoutSeconds)");
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            try { Directory.Delete(data, recursive: true); } catch (IOException) { }
        }
    }
}

/// <summary>What a call still running when <c>serve</c> stops hears.</summary>
public sealed class ServeStopAnswerTests
{
    // Writes the marker it is given (so the test knows it runs), then sleeps past the server's shutdown timeout.
    private const string SlowPolicy = """
        import time
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                open(input_data["marker"], "w").close()
                time.sleep(float(input_data["sleep"]))
                return {"slept": True}
            def management(self, action, data):
                return {}
        """;

    [Fact]
    public async Task A_call_still_running_when_the_shutdown_timeout_ends_is_answered_503_saying_the_server_is_stopping()
    {
        // Its connection was closed without an answer: the caller could not tell a stopping server from a lost network.
        if (!OperatingSystem.IsLinux()) Assert.Skip("POSIX signals");
        var ct = TestContext.Current.CancellationToken;
        var data = Directory.CreateTempSubdirectory("pg-stop-answer-").FullName;
        // The policy's worker may run as another user (the server as root): it must be able to write the marker here, and
        // shares the host's /tmp for it (PrivateTemp off).
        var markers = Directory.CreateTempSubdirectory("pg-stop-marker-");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(markers.FullName, (UnixFileMode)0b111_111_111);
        var marker = Path.Combine(markers.FullName, "running");
        var port = LoopbackPorts.Free();
        using var process = CliProcess.Start(["serve", "--urls", $"http://127.0.0.1:{port}", "--data", data, "--shutdownTimeoutSeconds=8",
            "--PolicyGrid:Runtime:Pool:PrivateTemp=false"]);
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(ct);
        patience.CancelAfter(TimeSpan.FromSeconds(90));
        var errors = process.StandardError.ReadToEndAsync(patience.Token);
        try
        {
            await CliProcess.UntilListeningAsync(process, patience.Token);
            var output = process.StandardOutput.ReadToEndAsync(patience.Token);
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
            var code = await Onboarding.UploadAsync(client, GridServer.Zip(SlowPolicy));
            var created = await client.Post("/policy", $$"""{"name": "slow", "version": "1.0", "release_tag": "test", "code": "{{code}}", "type": "python_class_v1"}""");
            created.Status.ShouldBe(200, created.Body?.ToJsonString());

            var call = client.Post("/executor/local/execute_policy",
                Onboarding.Execute("slow:1.0-test", $$"""{"marker": "{{marker}}", "sleep": 20}""", "\"timeout_seconds\": 25"));
            while (!File.Exists(marker) && !call.IsCompleted) await Task.Delay(20, patience.Token);
            if (!File.Exists(marker)) Assert.Fail($"the policy did not start: {(await call).Body?.ToJsonString()}");
            await CliProcess.SignalAsync(process, "TERM", patience.Token);

            var answer = await call;

            await process.WaitForExitAsync(patience.Token);
            (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString() + await output + await errors);
            answer.Message!.ShouldStartWith("the server is stopping: this call was still running ");
            answer.Message!.ShouldContain(" s after the stop began (the server gives calls in flight 8 s, --shutdownTimeoutSeconds), so it was stopped without its answer; it may have had effects");
            process.ExitCode.ShouldBe(0, await errors);
            (await output).ShouldNotContain("fail:");
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            try { Directory.Delete(data, recursive: true); } catch (IOException) { }
            try { markers.Delete(recursive: true); } catch (IOException) { }
        }
    }
}
