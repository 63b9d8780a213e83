using PolicyGrid.Cli.Commands;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// The CLI against a server that requires tokens: a refusal says how to give this CLI a token (--token,
/// POLICYGRID_TOKEN), not only the server's HTTP wording ("send 'Authorization: Bearer &lt;token&gt;'").
/// </summary>
public sealed class CliTokenTests(TokenServer server) : IClassFixture<TokenServer>
{
    private async Task<(int ExitCode, string Error)> Run(params string[] args)
    {
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(new StringWriter()), new StringWriter(), error, uri =>
        {
            var client = server.CreateDefaultClient();
            client.BaseAddress = uri;
            return client;
        });
        return (await CliApp.RunAsync(args, env), error.ToString());
    }

    [Theory]
    [InlineData("executor", "get", "local")]
    [InlineData("eval", "ip_allowlist:1.0-beta", "--input", """{"ip": "10.0.0.1"}""", "--local")]
    public async Task Without_a_token_the_cli_says_to_give_one_with_token_or_POLICYGRID_TOKEN(params string[] args)
    {
        var (code, error) = await Run(args);
        code.ShouldBe(1);
        error.ShouldContain("401 unauthorized");
        error.ShouldContain("--token");
        error.ShouldContain("POLICYGRID_TOKEN");
    }

    [Fact]
    public async Task A_token_the_server_does_not_know_is_named_as_the_one_given()
    {
        var (code, error) = await Run("executor", "get", "local", "--token", "not-a-configured-token-at-all");
        code.ShouldBe(1);
        error.ShouldContain("does not accept the token given with --token");
    }

    [Fact]
    public async Task A_read_token_used_to_write_is_told_to_use_a_token_with_the_scope()
    {
        var (code, error) = await Run("executor", "add", "cli_token_node", "--uri", "http://10.1.1.1:9000", "--token", TokenServer.Reader);
        code.ShouldBe(1);
        error.ShouldContain("403 forbidden");
        error.ShouldContain("write");
        error.ShouldContain("give a token with the scope");
    }

    [Fact]
    public async Task With_the_right_token_there_is_no_hint()
    {
        var (code, error) = await Run("executor", "get", "local", "--token", TokenServer.Reader);
        code.ShouldBe(0, error);
        error.ShouldNotContain("hint:");
    }
}
