using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

/// <summary>
/// <see cref="DocumentWalk.QueryEveryAsync(IDocumentStore, string, FilterNode, CancellationToken)"/> on the real SQLite
/// store: every document past the 1000 one query answers, and none passed over when others go while it reads.
/// </summary>
public sealed class DocumentWalkTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly SqliteDocumentStore _store;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public DocumentWalkTests() => _store = new SqliteDocumentStore(new SqliteDatabase(_dir.File("policygrid.db")));

    public void Dispose() => _dir.Dispose();

    private static string Id(int n) => $"d{n:D5}";

    private static readonly FilterNode Open =
        FilterParser.Parse(new JsonObject { ["status"] = new JsonObject { ["$in"] = new JsonArray("pending", "running") } });

    // n documents d00000.., every third one finished, the others running.
    private Task FillAsync(int n) =>
        _store.CreateManyAsync("jobs", [.. Enumerable.Range(0, n)], Id, static (w, i) =>
        {
            w.WriteStartObject();
            w.WriteString("status", i % 3 == 0 ? "succeeded" : "running");
            w.WriteNumber("n", i);
            w.WriteEndObject();
        }, Ct);

    private Task FinishAsync(string id) =>
        _store.UpsertAsync("jobs", id, new JsonObject { ["status"] = "succeeded" }, Ct);

    [Fact]
    public async Task Every_document_past_one_page_is_answered_once_in_id_order()
    {
        await FillAsync(2500);
        var all = new List<string>();
        await foreach (var doc in _store.QueryEveryAsync("jobs", Ct)) all.Add(doc.Id);
        all.ShouldBe(Enumerable.Range(0, 2500).Select(Id));

        var open = new List<string>();
        await foreach (var doc in _store.QueryEveryAsync("jobs", Open, Ct)) open.Add(doc.Id);
        open.ShouldBe(Enumerable.Range(0, 2500).Where(i => i % 3 != 0).Select(Id));
    }

    [Theory]
    [InlineData(5)]    // within the overlap
    [InlineData(600)]  // far more than the overlap: the page is read again from further back
    public async Task Documents_that_stop_matching_behind_the_walk_do_not_make_it_pass_over_others(int finished)
    {
        await FillAsync(3000);
        var open = new List<string>();
        await foreach (var doc in _store.QueryEveryAsync("jobs", Open, Ct))
        {
            open.Add(doc.Id);
            // Once the first page is read, jobs it answered finish (a position-based walk would now skip as many).
            if (open.Count == DocumentQuery.MaxLimit)
                foreach (var id in open.Take(finished).ToList()) await FinishAsync(id);
        }
        open.ShouldBe(Enumerable.Range(0, 3000).Where(i => i % 3 != 0).Select(Id));
    }

    [Fact]
    public async Task Documents_deleted_behind_the_walk_including_the_last_one_answered_do_not_make_it_pass_over_others()
    {
        await FillAsync(2500);
        var seen = new List<string>();
        await foreach (var doc in _store.QueryEveryAsync("jobs", Ct))
        {
            seen.Add(doc.Id);
            if (seen.Count == DocumentQuery.MaxLimit)
                foreach (var id in seen.Skip(100).ToList()) await _store.DeleteAsync("jobs", id, null, Ct);
        }
        seen.ShouldBe(Enumerable.Range(0, 2500).Select(Id));
    }
}
