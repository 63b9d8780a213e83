using System.IO.Compression;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.TestSupport;

/// <summary>
/// The real embedded server (the composition of <c>policygrid serve</c>) on a data directory that can outlive it:
/// a second server over the same directory is the same server restarted.
/// </summary>
public sealed class GridServer(string dataDirectory) : WebApplicationFactory<PolicyGrid.Cli.Program>
{
    public static string NewDataDirectory() => Path.Combine(Path.GetTempPath(), "pg-grid-tests", Guid.NewGuid().ToString("N"));

    public string DataDirectory { get; } = dataDirectory;

    protected override IHost CreateHost(IHostBuilder builder)
    {
        builder.ConfigureHostConfiguration(c => c.AddInMemoryCollection(new Dictionary<string, string?> { ["data"] = DataDirectory }));
        return base.CreateHost(builder);
    }

    public T Service<T>() where T : notnull => Services.GetRequiredService<T>();

    /// <summary>Registers a policy running <paramref name="source"/> and answers its URI.</summary>
    public async Task<string> RegisterPolicyAsync(string name, string source, JsonObject? parametersSchema = null, JsonObject? parameters = null)
    {
        var bundle = await Service<IBundleStore>().PutAsync(Zip(source));
        var body = new JsonObject
        {
            ["name"] = name,
            ["version"] = "1.0",
            ["release_tag"] = "test",
            ["code"] = bundle.Code,
            ["type"] = "python_class_v1",
            ["policy_parameters_schema"] = parametersSchema ?? new JsonObject(),
            ["policy_parameters"] = parameters ?? new JsonObject(),
        };
        var answer = await CreateClient().Send(HttpMethod.Post, "/policy", body);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return $"{name}:1.0-test";
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
}

/// <summary>An answer read as a contract client reads it.</summary>
public sealed record Answer(int Status, JsonNode? Body)
{
    public JsonNode? Data => Body?["data"];
    public string? Code => Body?["code"]?.GetValue<string>();
    public string Message => Body?["message"]?.GetValue<string>() ?? "";
}

public static class Requests
{
    public static async Task<Answer> Send(this HttpClient client, HttpMethod method, string path, JsonNode? body = null, string? raw = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (raw is not null) request.Content = new StringContent(raw, Encoding.UTF8, "application/json");
        else if (body is not null) request.Content = JsonContent.Create(body);
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        return new Answer((int)response.StatusCode, text.Length > 0 && text.TrimStart().StartsWith('{') ? JsonNode.Parse(text) : null);
    }
}
