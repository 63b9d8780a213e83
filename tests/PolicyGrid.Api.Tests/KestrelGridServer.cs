using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Cli;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// <c>policygrid serve</c>'s composition on a real Kestrel port on loopback, for what the test server cannot show:
/// Kestrel's own limits and how it writes (or leaves out) a body. Requests go as exact bytes over a socket.
/// </summary>
public class KestrelGridServer : IAsyncLifetime
{
    /// <summary>Settings added to serve's command line (written --Section:Key=value).</summary>
    protected virtual string[] Settings => [];

    private readonly string _data = Directory.CreateTempSubdirectory("pg-kestrel-").FullName;
    private WebApplication? _app;

    public Uri Address { get; private set; } = null!;

    public IServiceProvider Services => _app!.Services;

    public async ValueTask InitializeAsync()
    {
        _app = PolicyGridApp.Build(["--urls", "http://127.0.0.1:0", "--data", _data, .. Settings]);
        await _app.StartAsync(TestContext.Current.CancellationToken);
        Address = new Uri(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync(CancellationToken.None);
            await _app.DisposeAsync();
        }
        try { Directory.Delete(_data, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// Sends <paramref name="head"/> (request line and headers, CRLF-separated, without the blank line that ends them)
    /// and <paramref name="body"/>, and reads the whole answer: the connection is closed after it.
    /// </summary>
    public async Task<RawAnswer> SendAsync(string head, string body = "")
    {
        using var socket = new TcpClient();
        await socket.ConnectAsync(Address.Host, Address.Port, TestContext.Current.CancellationToken);
        var stream = socket.GetStream();
        await stream.WriteAsync(Encoding.Latin1.GetBytes($"{head}\r\nConnection: close\r\n\r\n{body}"), TestContext.Current.CancellationToken);
        using var answer = new MemoryStream();
        try
        {
            await stream.CopyToAsync(answer, TestContext.Current.CancellationToken);
        }
        catch (IOException)
        {
            // Kestrel may reset a connection whose request it refused before reading all of it; what came is the answer.
        }
        return RawAnswer.Parse(answer.ToArray());
    }
}

/// <summary>
/// A server whose workers run as its own uid, as a non-root server's do: under root, <c>RunAsUser</c> empty keeps them
/// root. Their connections then carry no uid of their own.
/// </summary>
public sealed class KestrelGridServerSharingItsUid : KestrelGridServer
{
    protected override string[] Settings => ["--PolicyGrid:Runtime:Pool:RunAsUser="];
}

/// <summary>An HTTP/1.1 answer as it came off the wire.</summary>
public sealed record RawAnswer(int Status, IReadOnlyDictionary<string, string> Headers, string Body)
{
    public string? Header(string name) => Headers.GetValueOrDefault(name);

    public System.Text.Json.Nodes.JsonNode? Json => Body.Length == 0 ? null : System.Text.Json.Nodes.JsonNode.Parse(Body);

    public static RawAnswer Parse(byte[] bytes)
    {
        var text = Encoding.Latin1.GetString(bytes);
        var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0) throw new InvalidOperationException($"no complete HTTP answer: '{text}'");
        var lines = text[..end].Split("\r\n");
        var status = int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var name = line[..colon];
            var value = line[(colon + 1)..].Trim();
            headers[name] = headers.TryGetValue(name, out var before) ? $"{before}, {value}" : value;
        }
        var body = text[(end + 4)..];
        if (headers.GetValueOrDefault("Transfer-Encoding")?.Contains("chunked", StringComparison.OrdinalIgnoreCase) == true) body = Unchunk(body);
        return new RawAnswer(status, headers, Encoding.UTF8.GetString(Encoding.Latin1.GetBytes(body)));
    }

    private static string Unchunk(string chunked)
    {
        var body = new StringBuilder();
        var at = 0;
        while (true)
        {
            var lineEnd = chunked.IndexOf("\r\n", at, StringComparison.Ordinal);
            var size = Convert.ToInt32(chunked[at..lineEnd].Split(';')[0], 16);
            if (size == 0) return body.ToString();
            body.Append(chunked, lineEnd + 2, size);
            at = lineEnd + 2 + size + 2;
        }
    }
}
