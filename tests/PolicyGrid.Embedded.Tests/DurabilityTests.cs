using System.Diagnostics;
using System.Text.Json.Nodes;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

/// <summary>Writes documents forever, printing each id once its write has been acknowledged.</summary>
internal static class DurabilityWriter
{
    public const string Mode = "durability-writer";

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
        var assembly = typeof(DurabilityWriter).Assembly.Location;
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(assembly);
        start.ArgumentList.Add(DurabilityWriter.Mode);
        start.ArgumentList.Add(_dir.Path);

        var acknowledged = new List<string>();
        using (var writer = Process.Start(start)!)
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
            deadline.CancelAfter(TimeSpan.FromSeconds(60));
            while (acknowledged.Count < 300)
            {
                var line = await writer.StandardOutput.ReadLineAsync(deadline.Token);
                if (line is null) Assert.Fail("writer exited early: " + await writer.StandardError.ReadToEndAsync(ct));
                acknowledged.Add(line!);
            }
            writer.Kill(); // SIGKILL: no flush, no dispose, no checkpoint
            // Ids it printed before dying were acknowledged too.
            while (await writer.StandardOutput.ReadLineAsync(deadline.Token) is { } line) acknowledged.Add(line);
            await writer.WaitForExitAsync(deadline.Token);
        }

        var store = new SqliteDocumentStore(new SqliteDatabase(_dir.File(EmbeddedStorage.DatabaseFile)));
        var stored = (await store.QueryAsync("policies", Core.Ports.DocumentQuery.All(100_000), ct)).ToDictionary(d => d.Id);
        foreach (var id in acknowledged)
        {
            stored.ShouldContainKey(id);
            stored[id].Body["seq"]!.GetValue<int>().ShouldBe(int.Parse(id[4..], System.Globalization.CultureInfo.InvariantCulture));
        }
        stored.Count.ShouldBeGreaterThanOrEqualTo(acknowledged.Count);
    }
}
