using System.Diagnostics;
using System.Text.Json.Nodes;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

/// <summary>Writes documents (or a context counter) forever, printing each once its write has been acknowledged.</summary>
internal static class DurabilityWriter
{
    public const string Mode = "durability-writer";
    public const string ContextMode = "durability-context-writer";

    /// <summary>Counts in one context key the way a stateful function saves its state after every call.</summary>
    public static async Task<int> CountInContextAsync(string dataDirectory)
    {
        var contexts = new SqliteContextStore(new SqliteDatabase(Path.Combine(dataDirectory, EmbeddedStorage.DatabaseFile)));
        for (var i = 1; ; i++)
        {
            await contexts.SetAsync("counter", new JsonObject { ["count"] = i }, null);
            Console.Out.WriteLine(i);
            Console.Out.Flush();
        }
    }

    public static async Task<int> RunAsync(string dataDirectory)
    {
        var store = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dataDirectory, EmbeddedStorage.DatabaseFile)));
        var payload = new string('x', 2_000);
        for (var i = 0; ; i++)
        {
            var id = $"doc-{i:D6}";
            await store.CreateAsync("policies", id, new JsonObject { ["seq"] = i, ["payload"] = payload });
            Console.Out.WriteLine(id);
            Console.Out.Flush();
        }
    }
}

public sealed class DurabilityTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Every_acknowledged_write_survives_kill_9_of_the_writer()
    {
        var ct = TestContext.Current.CancellationToken;
        var acknowledged = await WriteThenKillAsync(DurabilityWriter.Mode, ct);

        var store = new SqliteDocumentStore(new SqliteDatabase(_dir.File(EmbeddedStorage.DatabaseFile)));
        var stored = (await store.QueryAsync("policies", Core.Ports.DocumentQuery.All(100_000), ct)).ToDictionary(d => d.Id);
        foreach (var id in acknowledged)
        {
            stored.ShouldContainKey(id);
            stored[id].Body["seq"]!.GetValue<int>().ShouldBe(int.Parse(id[4..], System.Globalization.CultureInfo.InvariantCulture));
        }
        stored.Count.ShouldBeGreaterThanOrEqualTo(acknowledged.Count);
    }

    [Fact]
    public async Task An_acknowledged_context_write_survives_kill_9_of_the_writer()
    {
        // Context commits do not wait for a disk sync (it follows within milliseconds), but they are in
        // the write-ahead log before SetAsync returns: the server process dying loses none of them.
        var ct = TestContext.Current.CancellationToken;
        var acknowledged = await WriteThenKillAsync(DurabilityWriter.ContextMode, ct);

        var contexts = new SqliteContextStore(new SqliteDatabase(_dir.File(EmbeddedStorage.DatabaseFile)));
        var count = (await contexts.GetAsync("counter", ct))!["count"]!.GetValue<int>();
        count.ShouldBeGreaterThanOrEqualTo(int.Parse(acknowledged[^1], System.Globalization.CultureInfo.InvariantCulture));
    }

    // Runs a writer process in the given mode, SIGKILLs it after 300 acknowledged writes, and answers every
    // line it acknowledged (including those printed just before it died).
    private async Task<List<string>> WriteThenKillAsync(string mode, CancellationToken ct)
    {
        var assembly = typeof(DurabilityWriter).Assembly.Location;
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(assembly);
        start.ArgumentList.Add(mode);
        start.ArgumentList.Add(_dir.Path);

        var acknowledged = new List<string>();
        using var writer = Process.Start(start)!;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(60));
        while (acknowledged.Count < 300)
        {
            var line = await writer.StandardOutput.ReadLineAsync(deadline.Token);
            if (line is null) Assert.Fail("writer exited early: " + await writer.StandardError.ReadToEndAsync(ct));
            acknowledged.Add(line!);
        }
        writer.Kill(); // SIGKILL: no flush, no dispose, no checkpoint
        // Lines it printed before dying were acknowledged too.
        while (await writer.StandardOutput.ReadLineAsync(deadline.Token) is { } line) acknowledged.Add(line);
        await writer.WaitForExitAsync(deadline.Token);
        return acknowledged;
    }
}
