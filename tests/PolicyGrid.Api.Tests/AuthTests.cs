using System.Diagnostics;
using Shouldly;
using PolicyGrid.Cli;
using PolicyGrid.Cli.Serve;

namespace PolicyGrid.Api.Tests;

/// <summary>A server with a read-only and a read-write token configured.</summary>
public sealed class TokenServer : GridServer
{
    public const string Reader = "read-only-token-0123456789";
    public const string Writer = "read-write-token-0123456789";

    public TokenServer() => Settings = new()
    {
        ["PolicyGrid:Auth:Tokens:0:Name"] = "dashboard",
        ["PolicyGrid:Auth:Tokens:0:Token"] = Reader,
        ["PolicyGrid:Auth:Tokens:0:Scopes:0"] = "read",
        ["PolicyGrid:Auth:Tokens:1:Name"] = "ci",
        ["PolicyGrid:Auth:Tokens:1:Token"] = Writer,
        ["PolicyGrid:Auth:Tokens:1:Scopes:0"] = "read",
        ["PolicyGrid:Auth:Tokens:1:Scopes:1"] = "write",
    };
}

public sealed class AuthTests(TokenServer server) : IClassFixture<TokenServer>
{
    private const string ExecutorBody = """{"executor_id": "auth_node", "executor_host_uri": "http://10.1.1.1:9000"}""";

    [Fact]
    public async Task Once_tokens_are_configured_a_request_without_one_is_a_401_even_on_loopback()
    {
        var anonymous = server.ClientWith(null);
        var read = await anonymous.Get("/executor/local");
        read.Status.ShouldBe(401);
        read.Code.ShouldBe("unauthorized");
        read.Message!.ShouldContain("Bearer");
        (await anonymous.Post("/executor", ExecutorBody)).Status.ShouldBe(401);
        (await server.ClientWith(TokenServer.Writer).Get("/executor/auth_node")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task A_wrong_token_is_a_401()
    {
        var answer = await server.ClientWith("not-a-configured-token-at-all").Get("/executor/local");
        answer.Status.ShouldBe(401);
        answer.Message!.ShouldContain("not valid");
    }

    [Fact]
    public async Task A_401_challenges_for_a_bearer_token_and_says_when_the_one_sent_is_invalid()
    {
        var missing = await server.ClientWith(null).Get("/executor/local");
        missing.Status.ShouldBe(401);
        missing.Header("WWW-Authenticate").ShouldBe("Bearer");

        var basic = await server.ClientWith(null).Call(HttpMethod.Get, "/executor/local",
            configure: r => r.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic", "dXNlcjpwYXNz"));
        basic.Status.ShouldBe(401);
        basic.Header("WWW-Authenticate").ShouldBe("Bearer");

        var wrong = await server.ClientWith("not-a-configured-token-at-all").Get("/executor/local");
        wrong.Status.ShouldBe(401);
        wrong.Header("WWW-Authenticate").ShouldBe("Bearer error=\"invalid_token\"");
        wrong.Code.ShouldBe("unauthorized");
    }

    [Fact]
    public async Task Every_401_carries_the_bearer_challenge_even_from_a_route_with_its_own_token()
    {
        var answer = await server.ClientWith(null).Post($"/jobs/{Guid.NewGuid()}/result", """{"status": "succeeded", "result": {}}""");
        answer.Status.ShouldBe(401);
        answer.Header("WWW-Authenticate").ShouldBe("Bearer");
    }

    [Fact]
    public async Task A_403_lists_each_scope_of_the_token_once()
    {
        var answer = await server.ClientWith(TokenServer.Reader).Post("/executor", ExecutorBody);
        answer.Status.ShouldBe(403);
        answer.Message.ShouldStartWith("token 'dashboard' has scope read; POST /executor needs 'write'");
    }

    [Fact]
    public async Task A_read_token_may_read_and_query_but_not_write()
    {
        var reader = server.ClientWith(TokenServer.Reader);
        (await reader.Get("/executor/local")).Status.ShouldBe(200);
        (await reader.Post("/executor/query", "{}")).Status.ShouldBe(200);
        (await reader.Post("/policy/query", "{}")).Status.ShouldBe(200);
        var write = await reader.Post("/executor", ExecutorBody);
        write.Status.ShouldBe(403);
        write.Code.ShouldBe("forbidden");
        write.Message!.ShouldContain("write");
        var execute = await reader.Post("/executor/local/execute_policy", """{"policy_rule_uri": "p:1.0-beta", "input_data": {}}""");
        execute.Status.ShouldBe(403);
    }

    [Fact]
    public async Task A_write_token_may_write()
    {
        var writer = server.ClientWith(TokenServer.Writer);
        var created = await writer.Post("/executor", """{"executor_id": "writer_node", "executor_host_uri": "http://10.1.1.2:9000"}""");
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        (await writer.Delete("/executor/writer_node")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Probes_and_the_api_description_stay_open()
    {
        var anonymous = server.ClientWith(null);
        (await anonymous.Get("/healthz")).Status.ShouldBe(200);
        (await anonymous.Get("/openapi/v1.json")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task A_bundle_download_needs_a_token_by_default()
    {
        var sha = await BundleDownloads.UploadAsync(server.ClientWith(TokenServer.Writer), "default");

        var anonymous = server.ClientWith(null);
        (await anonymous.Get($"/bundles/sha256/{sha}")).Status.ShouldBe(401);
        (await anonymous.Call(HttpMethod.Head, $"/bundles/sha256/{sha}")).Status.ShouldBe(401);
        (await server.ClientWith(TokenServer.Reader).GetAsync($"/bundles/sha256/{sha}", TestContext.Current.CancellationToken)).StatusCode
            .ShouldBe(System.Net.HttpStatusCode.OK);
    }
}

/// <summary>A server with tokens that lets bundles be downloaded by hash without one, as an executor node does for its job pods.</summary>
public sealed class AnonymousBundleDownloadServer : GridServer
{
    public AnonymousBundleDownloadServer() => Settings = new()
    {
        ["PolicyGrid:Auth:Tokens:0:Name"] = "registry",
        ["PolicyGrid:Auth:Tokens:0:Token"] = TokenServer.Writer,
        ["PolicyGrid:Auth:Tokens:0:Scopes:0"] = "write",
        ["PolicyGrid:Auth:AnonymousBundleDownloads"] = "true",
    };
}

public static class BundleDownloads
{
    /// <summary>Uploads a bundle unique to <paramref name="tag"/> and answers its sha256.</summary>
    public static async Task<string> UploadAsync(HttpClient writer, string tag)
    {
        var zip = GridServer.Zip(GridServer.EchoPolicy + $"\n# {tag} {Guid.NewGuid()}\n");
        var request = new HttpRequestMessage(HttpMethod.Post, "/bundles") { Content = new ByteArrayContent(zip) };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/zip");
        var answer = await writer.Exchange(request);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return answer.Data!["sha256"]!.GetValue<string>();
    }
}

public sealed class AnonymousBundleDownloadTests(AnonymousBundleDownloadServer server) : IClassFixture<AnonymousBundleDownloadServer>
{
    [Fact]
    public async Task A_bundle_is_downloaded_by_its_hash_without_a_token()
    {
        var sha = await BundleDownloads.UploadAsync(server.ClientWith(TokenServer.Writer), "anonymous");

        var anonymous = server.ClientWith(null);
        var download = await anonymous.GetAsync($"/bundles/sha256/{sha}", TestContext.Current.CancellationToken);
        download.StatusCode.ShouldBe(System.Net.HttpStatusCode.OK);
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            await download.Content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken))).ShouldBe(sha);
        (await anonymous.Call(HttpMethod.Head, $"/bundles/sha256/{sha}")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Everything_else_still_needs_a_token()
    {
        var anonymous = server.ClientWith(null);
        (await anonymous.Get("/policy/x")).Status.ShouldBe(401);
        (await anonymous.Get("/executor/local")).Status.ShouldBe(401);
        var zip = GridServer.Zip(GridServer.EchoPolicy);
        var upload = new HttpRequestMessage(HttpMethod.Post, "/bundles") { Content = new ByteArrayContent(zip) };
        upload.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/zip");
        (await anonymous.Exchange(upload)).Status.ShouldBe(401);
    }
}

public sealed class BindSafetyTests
{
    private static string TempData() => Path.Combine(Path.GetTempPath(), "pg-api-tests", Guid.NewGuid().ToString("N"));

    [Theory]
    [InlineData("http://0.0.0.0:10999")]
    [InlineData("http://*:10999")]
    [InlineData("http://+:10999")]
    [InlineData("http://[::]:10999")]
    [InlineData("http://192.168.1.20:10999")]
    [InlineData("http://127.0.0.1:10999;http://0.0.0.0:10998")]
    public void Serve_refuses_a_non_loopback_bind_without_tokens(string urls)
    {
        var refused = Should.Throw<ServeRefusedException>(() => PolicyGridApp.Build(["--urls", urls, "--data", TempData()]));
        refused.Message.ShouldContain("--insecure");
        refused.Message.ShouldContain("tokens");
    }

    [Fact]
    public void A_kestrel_endpoint_off_loopback_is_refused_without_tokens_like_urls()
    {
        // Kestrel's configured endpoints replace --urls: on their own they opened the API to the network.
        var refused = Should.Throw<ServeRefusedException>(() => PolicyGridApp.Build(
            ["--urls", "http://127.0.0.1:10999", "--Kestrel:Endpoints:Public:Url", "http://0.0.0.0:10998", "--data", TempData()]));
        refused.Message.ShouldContain("http://0.0.0.0:10998");
        refused.Message.ShouldContain("--insecure");
    }

    [Theory]
    [InlineData("http://127.0.0.1:10999")]
    [InlineData("http://localhost:10999")]
    [InlineData("http://[::1]:10999")]
    public async Task Serve_allows_loopback_without_tokens(string urls)
    {
        await using var app = PolicyGridApp.Build(["--urls", urls, "--data", TempData()]);
        app.ShouldNotBeNull();
    }

    [Fact]
    public async Task Serve_allows_a_non_loopback_bind_with_insecure_or_with_tokens()
    {
        await using (var insecure = PolicyGridApp.Build(["--urls", "http://0.0.0.0:10999", "--insecure", "--data", TempData()])) insecure.ShouldNotBeNull();
        await using var withTokens = PolicyGridApp.Build(["--urls", "http://0.0.0.0:10999", "--data", TempData(),
            "--PolicyGrid:Auth:Tokens:0:Name=ops", "--PolicyGrid:Auth:Tokens:0:Token=ops-token-0123456789", "--PolicyGrid:Auth:Tokens:0:Scopes:0=write"]);
        withTokens.ShouldNotBeNull();
    }

    [Theory]
    [InlineData("127.0.0.1:10994")]
    [InlineData("http://127.0.0.1:10994;localhost:10993")]
    public void A_listen_address_without_its_scheme_is_refused_naming_it(string urls)
    {
        // Kestrel threw FormatException "Invalid url" at bind time: serve crashed (exit 134) with a stack trace.
        var refused = Should.Throw<ServeRefusedException>(() => PolicyGridApp.Build(["--urls", urls, "--data", TempData()]));
        refused.Message.ShouldContain("is not an address to listen on: give scheme, host and port, e.g. --urls http://127.0.0.1:10001");
        refused.Message.ShouldContain($"'{urls.Split(';')[^1]}'");
    }

    [Theory]
    [InlineData("--port", "10001")]
    [InlineData("--dat", "/tmp/pg")]
    [InlineData("--url=http://127.0.0.1:10001")]
    public void An_option_serve_does_not_take_is_refused_not_stored_as_a_setting_nothing_reads(params string[] option)
    {
        // serve --port 10001 started on 10000: the host took --port for a configuration key.
        var refused = Should.Throw<ServeRefusedException>(() => PolicyGridApp.Build(["--data", TempData(), .. option]));
        refused.Message.ShouldStartWith($"serve does not take {option[0].Split('=')[0]}: it takes --urls, --data, --insecure");
    }

    [Fact]
    public async Task Host_options_and_sectioned_settings_still_reach_the_host()
    {
        await using var app = PolicyGridApp.Build(["--urls", "http://127.0.0.1:10991", "--data", TempData(), "--environment", "Production",
            "--PolicyGrid:Runtime:Pool:Workers=1", "--Logging:LogLevel:Default=Warning"]);
        app.Environment.EnvironmentName.ShouldBe("Production");
        app.Configuration["PolicyGrid:Runtime:Pool:Workers"].ShouldBe("1");
    }

    [Fact]
    public void A_data_directory_that_is_a_file_is_refused_naming_it()
    {
        // It crashed serve with an unhandled IOException and its stack trace.
        var file = Path.GetTempFileName();
        try
        {
            var refused = Should.Throw<ServeRefusedException>(() => PolicyGridApp.Build(["--urls", "http://127.0.0.1:10992", "--data", file]));
            refused.Message.ShouldContain($"cannot use '{file}' as the data directory");
            refused.Message.ShouldContain("--data");
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task A_second_server_on_a_data_directory_in_use_is_refused_until_the_first_stops()
    {
        var data = TempData();
        var first = PolicyGridApp.Build(["--urls", "http://127.0.0.1:10996", "--data", data]);
        var refused = Should.Throw<ServeRefusedException>(() => PolicyGridApp.Build(["--urls", "http://127.0.0.1:10995", "--data", data]));
        refused.Message.ShouldContain("in use by another running policygrid serve");
        refused.Message.ShouldContain(data);

        await first.DisposeAsync();
        await using var next = PolicyGridApp.Build(["--urls", "http://127.0.0.1:10995", "--data", data]);
        next.ShouldNotBeNull();
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    public async Task Serve_asked_for_help_prints_its_options_and_exits_without_serving(string flag)
    {
        var data = TempData();
        using var process = CliProcess.Start(["serve", "--urls", $"http://127.0.0.1:{LoopbackPorts.Free()}", "--data", data, flag]);
        // Before, serve ignored the flag and ran until stopped: give up on it after a minute rather than hang.
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        patience.CancelAfter(TimeSpan.FromMinutes(1));
        try
        {
            var stdout = await process.StandardOutput.ReadToEndAsync(patience.Token);
            await process.WaitForExitAsync(patience.Token);
            process.ExitCode.ShouldBe(0);
            stdout.ShouldContain("Usage: policygrid serve");
            stdout.ShouldContain("--data");
            (!Directory.Exists(data) || !Directory.EnumerateFileSystemEntries(data).Any()).ShouldBeTrue(); // it opened no store
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public async Task The_real_serve_command_exits_with_a_message_when_refusing()
    {
        using var process = CliProcess.Start(["serve", "--urls", "http://0.0.0.0:10997", "--data", TempData()]);
        var stderr = await process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken);
        process.ExitCode.ShouldBe(2);
        stderr.ShouldContain("refusing to serve without API tokens");
    }

    [Fact]
    public async Task Serve_on_a_port_already_taken_exits_2_with_one_line_saying_so_not_stack_traces()
    {
        // It crashed (exit 134) with the bind failure's stack trace three times over: the host's log, a background
        // service's, and the unhandled exception.
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        using var process = CliProcess.Start(["serve", "--urls", $"http://127.0.0.1:{port}", "--data", TempData()]);
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        patience.CancelAfter(TimeSpan.FromMinutes(1));
        try
        {
            var stdout = process.StandardOutput.ReadToEndAsync(patience.Token);
            var stderr = await process.StandardError.ReadToEndAsync(patience.Token);
            await process.WaitForExitAsync(patience.Token);
            process.ExitCode.ShouldBe(2, stderr);
            stderr.ShouldContain($"policygrid serve: Failed to bind to address http://127.0.0.1:{port}: address already in use.");
            stderr.ShouldContain("--urls");
            (await stdout + stderr).ShouldNotContain("   at ");
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }
}
