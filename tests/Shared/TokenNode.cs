using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Cli;

namespace PolicyGrid.TestSupport;

/// <summary>
/// Another PolicyGrid server on loopback, with its own data directory, that requires a bearer token: an executor node
/// another registry (or the graphs app) reaches over HTTP. Disposing it stops the node; a second dispose does nothing.
/// </summary>
public sealed class TokenNode : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly string _data;
    private bool _disposed;

    private TokenNode(WebApplication app, string data) =>
        (_app, _data, Url) = (app, data, app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    /// <summary>The node's address (kept after it stops, for tests of a node that went away).</summary>
    public string Url { get; }
    public IServiceProvider Services => _app.Services;

    /// <summary>Starts a node whose only token is <paramref name="token"/> (named <paramref name="tokenName"/>, read and write).</summary>
    public static async Task<TokenNode> StartAsync(string tokenName, string token, CancellationToken ct)
    {
        var data = GridServer.NewDataDirectory();
        var app = PolicyGridApp.Build(["--urls", "http://127.0.0.1:0", "--data", data, "--Logging:LogLevel:Default=Warning",
            $"--PolicyGrid:Auth:Tokens:0:Name={tokenName}", $"--PolicyGrid:Auth:Tokens:0:Token={token}",
            "--PolicyGrid:Auth:Tokens:0:Scopes:0=read", "--PolicyGrid:Auth:Tokens:0:Scopes:1=write"]);
        await app.StartAsync(ct);
        return new TokenNode(app, data);
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
        Directory.Delete(_data, recursive: true);
    }
}
