using System.Diagnostics;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Cli;

namespace PolicyGrid.Bench.Type4;

/// <summary>A real `serve` on loopback for the function and graph benchmarks, with the calls they make.</summary>
internal sealed class BenchGrid : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly string _data;

    private BenchGrid(WebApplication app, string data, HttpClient http)
    {
        _app = app;
        _data = data;
        Http = http;
    }

    public HttpClient Http { get; }

    public static async Task<BenchGrid> StartAsync(int clients)
    {
        var data = Directory.CreateTempSubdirectory("pg-bench-fg-").FullName;
        var app = PolicyGridApp.Build(["--urls", "http://127.0.0.1:0", "--data", data, "--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:policygrid=Warning"]);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = Math.Max(clients, 4), PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
            { BaseAddress = new Uri(address + "/"), Timeout = TimeSpan.FromMinutes(2) };
        return new BenchGrid(app, data, http);
    }

    /// <summary>Registers a policy from source (stored as a bundle upload) and answers its URI.</summary>
    public async Task<string> PolicyAsync(string name, string source)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            using var w = new StreamWriter(zip.CreateEntry("code/function.py").Open(), Encoding.UTF8);
            await w.WriteAsync(source);
        }
        using var upload = new ByteArrayContent(buffer.ToArray());
        upload.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        using var uploaded = await Http.PostAsync("bundles", upload);
        var code = JsonNode.Parse(await uploaded.Content.ReadAsStringAsync())!["data"]!["code"]!.GetValue<string>();
        await PostAsync("policy", new JsonObject
        {
            ["name"] = name, ["version"] = "1.0", ["release_tag"] = "bench", ["code"] = code, ["type"] = "python_class_v1",
        });
        return $"{name}:1.0-bench";
    }

    public Task<JsonNode?> DeployAsync(string name, string policy, JsonObject? parameters = null) =>
        PostAsync("function/deployments/create/local", new JsonObject
        {
            ["name"] = name, ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = parameters ?? new JsonObject(),
        });

    public async Task<JsonNode?> PostAsync(string path, JsonNode body)
    {
        using var content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        using var response = await Http.PostAsync(path, content);
        var text = await response.Content.ReadAsStringAsync();
        if (response.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException($"{path} answered {(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!["data"];
    }

    /// <summary>Median and p99 of <paramref name="count"/> sequential runs of <paramref name="call"/>, after a warm-up.</summary>
    public static async Task<Latency> LatencyAsync(int count, Func<Task> call)
    {
        for (var i = 0; i < Math.Max(5, count / 10); i++) await call();
        var samples = new double[count];
        for (var i = 0; i < count; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await call();
            samples[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Array.Sort(samples);
        return new Latency(samples[count / 2], samples[(int)(count * 0.99)]);
    }

    /// <summary>Calls per second with <paramref name="clients"/> callers, each running <paramref name="call"/>(its index) in a loop.</summary>
    public static async Task<double> ThroughputAsync(int clients, double seconds, Func<int, Task> call)
    {
        var until = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        var counts = new int[clients];
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async i =>
        {
            while (Stopwatch.GetTimestamp() < until)
            {
                await call(i);
                counts[i]++;
            }
        }));
        return counts.Sum() / clock.Elapsed.TotalSeconds;
    }

    public static double Option(string[] args, string name, double fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length && double.TryParse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : fallback;
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        try { Directory.Delete(_data, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

internal sealed record Latency(double P50Ms, double P99Ms);
