using System.IO.Compression;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using PolicyGrid.Cli;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// The real app (Program.Main → PolicyGridApp.Build, the same composition as `policygrid serve`)
/// on a fresh temporary SQLite data directory, optionally with API tokens configured.
/// </summary>
public class PolicyGridServer : WebApplicationFactory<Program>
{
    private readonly Dictionary<string, string?> settings;

    public PolicyGridServer() : this([]) { }

    protected PolicyGridServer(Dictionary<string, string?> settings)
    {
        this.settings = settings;
        DataDirectory = Path.Combine(Path.GetTempPath(), "pg-api-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(DataDirectory);
    }

    public string DataDirectory { get; }

    public IDocumentStore Store => Services.GetRequiredService<IDocumentStore>();
    public IBundleStore Bundles => Services.GetRequiredService<IBundleStore>();

    protected override IHost CreateHost(IHostBuilder builder)
    {
        // Host configuration reaches Program.Main as --key=value arguments, so --data is parsed exactly as serve parses it.
        builder.ConfigureHostConfiguration(c => c.AddInMemoryCollection(new Dictionary<string, string?> { ["data"] = DataDirectory }));
        return base.CreateHost(builder);
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        foreach (var (key, value) in settings) builder.UseSetting(key, value);
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        GC.SuppressFinalize(this);
        try { Directory.Delete(DataDirectory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>A zip holding code/function.py (and anything else given), as a policy author would upload.</summary>
    public static byte[] Zip(params (string Path, string Content)[] files)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (path, content) in files)
            {
                using var w = new StreamWriter(zip.CreateEntry(path).Open(), Encoding.UTF8);
                w.Write(content);
            }
        }
        return buffer.ToArray();
    }

    public const string EchoPolicy = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.rule_id = rule_id
            def eval(self, parameters, input_data, context):
                return {"echo": input_data}
        """;

    /// <summary>Stores a small valid bundle directly and answers its bundle:// code.</summary>
    public async Task<string> StoreBundleAsync(string source = EchoPolicy)
    {
        var stored = await Bundles.PutAsync(Zip(("code/function.py", source)));
        return stored.Code;
    }
}

/// <summary>An HTTP answer read the way a client of the contract reads it.</summary>
public sealed record ApiAnswer(int Status, JsonNode? Body, HttpResponseMessage Response)
{
    public JsonNode? Data => Body?["data"];
    public string? Message => Body?["message"]?.GetValue<string>();
    public string? Code => Body?["code"]?.GetValue<string>();
    public bool? Success => Body?["success"]?.GetValue<bool>();
    public string? Header(string name) => Response.Headers.TryGetValues(name, out var v) ? string.Join(",", v)
        : Response.Content.Headers.TryGetValues(name, out var c) ? string.Join(",", c) : null;
}

public static class HttpClientCalls
{
    public static Task<ApiAnswer> Call(this HttpClient client, HttpMethod method, string path, string? json = null, string contentType = "application/json", Action<HttpRequestMessage>? configure = null)
    {
        var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8);
            request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        }
        configure?.Invoke(request);
        return client.Exchange(request);
    }

    public static async Task<ApiAnswer> Exchange(this HttpClient client, HttpRequestMessage request)
    {
        var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        JsonNode? body = null;
        if (text.Length > 0 && (response.Content.Headers.ContentType?.MediaType?.Contains("json", StringComparison.Ordinal) ?? false))
            body = JsonNode.Parse(text);
        return new ApiAnswer((int)response.StatusCode, body, response);
    }

    public static Task<ApiAnswer> Post(this HttpClient client, string path, string? json, string contentType = "application/json") => client.Call(HttpMethod.Post, path, json, contentType);
    public static Task<ApiAnswer> Put(this HttpClient client, string path, string json, string? ifMatch = null) =>
        client.Call(HttpMethod.Put, path, json, configure: r => { if (ifMatch is not null) r.Headers.TryAddWithoutValidation("If-Match", ifMatch); });
    public static Task<ApiAnswer> Get(this HttpClient client, string path) => client.Call(HttpMethod.Get, path);
    public static Task<ApiAnswer> Delete(this HttpClient client, string path, string? ifMatch = null) =>
        client.Call(HttpMethod.Delete, path, configure: r => { if (ifMatch is not null) r.Headers.TryAddWithoutValidation("If-Match", ifMatch); });
}
