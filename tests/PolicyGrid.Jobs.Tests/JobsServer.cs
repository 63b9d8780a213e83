using System.IO.Compression;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using PolicyGrid.Api.Jobs;
using PolicyGrid.Cli;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Jobs.Tests;

/// <summary>
/// The real embedded server (the composition of <c>policygrid serve</c>) on a temporary SQLite data
/// directory. Two servers given the same directory one after the other are a server restart.
/// </summary>
public sealed class JobsServer : WebApplicationFactory<Program>
{
    private readonly Dictionary<string, string?> settings;
    private readonly bool ownsDirectory;

    public JobsServer(Dictionary<string, string?>? settings = null, string? dataDirectory = null)
    {
        // One Python worker per server: these tests run one policy at a time, and many servers run side by side.
        this.settings = new Dictionary<string, string?> { ["PolicyGrid:Runtime:Pool:Workers"] = "1" };
        foreach (var (key, value) in settings ?? []) this.settings[key] = value;
        ownsDirectory = dataDirectory is null;
        DataDirectory = dataDirectory ?? Path.Combine(Path.GetTempPath(), "pg-jobs-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(DataDirectory);
    }

    public string DataDirectory { get; }

    public IDocumentStore Store => Services.GetRequiredService<IDocumentStore>();
    public JobBoard Board => Services.GetRequiredService<JobBoard>();

    protected override IHost CreateHost(IHostBuilder builder)
    {
        builder.ConfigureHostConfiguration(c => c.AddInMemoryCollection(new Dictionary<string, string?> { ["data"] = DataDirectory }));
        return base.CreateHost(builder);
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        foreach (var (key, value) in settings) builder.UseSetting(key, value);
    }

    /// <summary>Stops the server but keeps its data directory, as a process exit would (a restart follows).</summary>
    public async Task DisposeWithoutDeletingAsync()
    {
        keepDirectory = true;
        await base.DisposeAsync();
    }

    private bool keepDirectory;

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (ownsDirectory && !keepDirectory)
            try { Directory.Delete(DataDirectory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    public static byte[] Zip(string functionPy)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            using var w = new StreamWriter(zip.CreateEntry("code/function.py").Open(), Encoding.UTF8);
            w.Write(functionPy);
        }
        return buffer.ToArray();
    }

    /// <summary>Registers a policy straight into the store (the Policies API is another area's; jobs only read it).</summary>
    public async Task<string> AddPolicyAsync(string name, string functionPy, JsonObject? extra = null)
    {
        var bundle = await Services.GetRequiredService<IBundleStore>().PutAsync(Zip(functionPy));
        var uri = $"{name}:1.0-test";
        var doc = new JsonObject
        {
            ["policy_rule_uri"] = uri, ["name"] = name, ["version"] = "1.0", ["release_tag"] = "test",
            ["code"] = bundle.Code, ["type"] = "python_class_v1",
        };
        foreach (var (k, v) in extra ?? []) doc[k] = v?.DeepClone();
        var rule = PolicyGrid.Core.Documents.PolicyRule.FromJson(doc);
        await Store.CreateAsync(Collections.Policies, uri, rule.ToJson());
        return uri;
    }

    public async Task AddExecutorAsync(string id, string uri, JsonObject? labels = null, JsonNode? vcpus = null, string status = "healthy")
    {
        var doc = new JsonObject
        {
            ["executor_id"] = id, ["executor_host_uri"] = uri,
            ["executor_metadata"] = new JsonObject { ["labels"] = labels ?? [] },
            ["executor_hardware_info"] = vcpus is null ? new JsonObject() : new JsonObject { ["vcpus"] = vcpus },
            ["executor_status"] = status,
        };
        await Store.UpsertAsync(Collections.Executors, id, PolicyGrid.Core.Documents.PolicyExecutor.FromJson(doc).ToJson());
    }
}

/// <summary>An HTTP answer read the way a client of the contract reads it.</summary>
public sealed record ApiAnswer(int Status, JsonNode? Body)
{
    public JsonNode? Data => Body?["data"];
    public string? Message => Body?["message"]?.GetValue<string>();
    public string? Code => Body?["code"]?.GetValue<string>();
    public string Status_ => Data?["status"]?.GetValue<string>() ?? "";
}

public static class Calls
{
    public static async Task<ApiAnswer> Send(this HttpClient client, HttpMethod method, string path, string? json = null, string? bearer = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null) request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        if (bearer is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        return new ApiAnswer((int)response.StatusCode, text.Length > 0 && text.TrimStart().StartsWith('{') ? JsonNode.Parse(text) : null);
    }

    public static Task<ApiAnswer> Post(this HttpClient client, string path, string json, string? bearer = null) => client.Send(HttpMethod.Post, path, json, bearer);
    public static Task<ApiAnswer> Get(this HttpClient client, string path) => client.Send(HttpMethod.Get, path);
    public static Task<ApiAnswer> Delete(this HttpClient client, string path, string? json = null) => client.Send(HttpMethod.Delete, path, json);
}
