using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Dapr.Documents;
using Shouldly;
using SortDirection = PolicyGrid.Core.Ports.SortDirection;

namespace PolicyGrid.Dapr.Tests.Adapters;

/// <summary>
/// What a query costs in <see cref="DocumentQueryMode.KeyIndex"/> mode, counted in documents the fake store was asked
/// for, and that reading less changes no answer. Every page of a walk over a collection (<see cref="DocumentWalk"/>) read
/// the whole collection, so walking N documents read ~N²/1000 (30,000 for 5,000); a list's first page read every document.
/// </summary>
public sealed class KeyIndexReadsTests
{
    private const string Jobs = Collections.Jobs;
    private readonly FakeStateStore state = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private DaprStateDocumentStore Store(int pageSize = 500, DocumentQueryMode mode = DocumentQueryMode.KeyIndex) =>
        new(state.Client, Options.Create(new DaprOptions { DocumentQueries = mode, QueryPageSize = pageSize }));

    private static string Id(int n) => $"j{n:D5}";

    // n jobs j00000.., every third one finished, the others running; created in one batch, as the decision log writes.
    private Task FillAsync(DaprStateDocumentStore store, int n) =>
        store.CreateManyAsync(Jobs, Enumerable.Range(0, n).Reverse().ToList(), Id, static (w, i) =>
            new JsonObject { ["status"] = i % 3 == 0 ? "succeeded" : "running", ["n"] = i }.WriteTo(w), Ct);

    private static readonly FilterNode Open = FilterParser.Parse(JsonNode.Parse("""{"status": {"$in": ["pending", "running"]}}"""));

    private async Task<List<string>> WalkAsync(IDocumentStore store, FilterNode filter, Func<List<string>, Task>? afterEach = null)
    {
        var seen = new List<string>();
        await foreach (var doc in store.QueryEveryAsync(Jobs, filter, Ct))
        {
            seen.Add(doc.Id);
            if (afterEach is not null) await afterEach(seen);
        }
        return seen;
    }

    [Fact]
    public async Task A_walk_over_a_collection_reads_each_document_about_once_not_once_per_page_before_it()
    {
        const int n = 4000;
        var store = Store();
        await FillAsync(store, n);
        var before = state.BulkReadKeys;

        (await WalkAsync(store, new AndFilter([]))).ShouldBe(Enumerable.Range(0, n).Select(Id));

        // Was 5 pages x 4000 = 20,000.
        (state.BulkReadKeys - before).ShouldBeLessThanOrEqualTo(n + 500);
        before = state.BulkReadKeys;
        (await WalkAsync(store, Open)).ShouldBe(Enumerable.Range(0, n).Where(i => i % 3 != 0).Select(Id));
        (state.BulkReadKeys - before).ShouldBeLessThanOrEqualTo(n + 500);
    }

    [Theory]
    [InlineData(5)]
    [InlineData(600)]
    public async Task A_walk_passes_over_none_that_stay_when_others_stop_matching_or_go_behind_it(int gone)
    {
        var store = Store();
        await FillAsync(store, 2500);

        var open = await WalkAsync(store, Open, async seen =>
        {
            // Once the first page is answered, jobs it answered finish and a few are deleted, among them the last one answered.
            if (seen.Count != DocumentQuery.MaxLimit) return;
            foreach (var id in seen.Take(gone)) await store.UpsertAsync(Jobs, id, new JsonObject { ["status"] = "succeeded" }, Ct);
            foreach (var id in seen.TakeLast(3)) await store.DeleteAsync(Jobs, id, null, Ct);
        });

        open.ShouldBe(Enumerable.Range(0, 2500).Where(i => i % 3 != 0).Select(Id));
    }

    [Theory]
    [InlineData(SortDirection.Asc)]
    [InlineData(SortDirection.Desc)] // the decision list's default order
    public async Task A_page_sorted_by_id_reads_about_as_many_documents_as_it_answers_and_skips(SortDirection direction)
    {
        var store = Store();
        await FillAsync(store, 3000);
        var window = new DocumentQuery(new AndFilter([]), direction == SortDirection.Asc ? [] : [SortKey.ById(direction)], 0, 100);

        var before = state.BulkReadKeys;
        var first = await store.QueryAsync(Jobs, window, Ct);
        var firstReads = state.BulkReadKeys - before;
        before = state.BulkReadKeys;
        var later = await store.QueryAsync(Jobs, window with { Skip = 1000 }, Ct);
        var laterReads = state.BulkReadKeys - before;

        var ids = direction == SortDirection.Asc ? Enumerable.Range(0, 3000) : Enumerable.Range(0, 3000).Reverse();
        first.Select(d => d.Id).ShouldBe(ids.Take(100).Select(Id));
        later.Select(d => d.Id).ShouldBe(ids.Skip(1000).Take(100).Select(Id));
        firstReads.ShouldBe(100);  // was 3000
        laterReads.ShouldBe(1100); // was 3000
    }

    [Fact]
    public async Task A_page_sorted_by_id_reads_on_past_ids_whose_document_is_gone_and_past_those_that_do_not_match()
    {
        var store = Store(pageSize: 4);
        await FillAsync(store, 40);
        foreach (var i in new[] { 1, 2, 4 }) state.Entries.Remove(StateKeys.Document(Jobs, Id(i))); // as after a crash before the index update

        var page = await store.QueryAsync(Jobs, new DocumentQuery(Open, [], 0, 5), Ct);

        page.Select(d => d.Id).ShouldBe(new[] { 5, 7, 8, 10, 11 }.Select(Id));
    }

    public static TheoryData<string, string> Windows()
    {
        var filters = new[]
        {
            "{}",
            """{"status": "running"}""",
            """{"$or": [{"n": {"$lt": 4}}, {"tags": "b"}]}""",
            """{"rank": {"$gte": 2}}""",
            """{"nothing": 1}""",
        };
        var sorts = new[] { "", "$id:asc", "$id:desc", "rank:asc", "rank:desc", "rank:asc,$id:desc", "$id:desc,rank:asc", "tags:asc,rank:desc", "missing:asc" };
        var data = new TheoryData<string, string>();
        foreach (var f in filters)
            foreach (var s in sorts)
                data.Add(f, s);
        return data;
    }

    [Theory]
    [MemberData(nameof(Windows))]
    public async Task Every_filter_sort_skip_and_limit_answers_what_reading_the_whole_collection_answers(string filterJson, string sortText)
    {
        // Ties on rank and tags, ids in an order code points and UTF-16 disagree on, ids whose document is gone,
        // and the index in no particular order.
        var ids = Enumerable.Range(0, 23).Select(i => $"d{(i * 7) % 23:D2}").Concat(["a\U0001F600", "a\uE000", "a", "Z", "z|1", "z%7C1"]).ToList();
        var store = Store(pageSize: 3);
        for (var i = 0; i < ids.Count; i++)
        {
            var body = new JsonObject { ["n"] = i, ["rank"] = i % 4, ["status"] = i % 3 == 0 ? "succeeded" : "running", ["tags"] = new JsonArray(i % 2 == 0 ? "a" : "b") };
            if (i % 5 == 0) body.Remove("rank");
            await store.CreateAsync(Jobs, ids[i], body, Ct);
        }
        foreach (var i in new[] { 3, 11, 24 }) state.Entries.Remove(StateKeys.Document(Jobs, ids[i]));
        var filter = FilterParser.Parse(JsonNode.Parse(filterJson));
        var sort = sortText.Length == 0 ? [] : sortText.Split(',').Select(k => k.Split(':')).Select(k => new SortKey(k[0], k[1] == "asc" ? SortDirection.Asc : SortDirection.Desc)).ToList();
        var stored = state.Entries.Where(e => e.Key.StartsWith(Jobs + "/", StringComparison.Ordinal))
            .Select(e => JsonSerializer.Deserialize<StateDocument>(e.Value.Json)!).Select(d => new StoredDocument(d.Id, d.Doc, d.Revision))
            .Where(d => filter.Matches(d.Body)).Order(new DocumentOrder(sort)).ToList();

        foreach (var skip in new[] { 0, 1, 2, 5, 13, 40 })
        {
            foreach (var limit in new[] { 1, 2, 4, 7, 1000 })
            {
                var page = await store.QueryAsync(Jobs, new DocumentQuery(filter, sort, skip, limit), Ct);
                page.Select(d => (d.Id, d.Revision, d.Body.ToJsonString())).ShouldBe(
                    stored.Skip(skip).Take(limit).Select(d => (d.Id, d.Revision, d.Body.ToJsonString())), $"skip {skip}, limit {limit}");
            }
        }
    }

    [Theory]
    [InlineData(DocumentQueryMode.KeyIndex)]
    [InlineData(DocumentQueryMode.QueryApi)]
    public async Task Query_after_an_id_answers_the_id_sorted_query_without_the_ids_up_to_it(DocumentQueryMode mode)
    {
        state.WithIdQueries();
        var store = Store(pageSize: 3, mode: mode);
        await FillAsync(store, 20);
        var filter = FilterParser.Parse(JsonNode.Parse("""{"n": {"$gte": 4}}""")); // not pushed down to the query API: the fake takes no filter

        foreach (var after in new string?[] { null, Id(0), Id(4), "j00006x", Id(19), "k", "" })
        {
            foreach (var limit in new[] { 1, 5, 1000 })
            {
                var expected = Enumerable.Range(4, 16).Select(Id).Where(id => after is null || DocumentOrder.CompareIds(id, after) > 0).Take(limit);
                (await store.QueryAfterAsync(Jobs, filter, after, limit, Ct)).Select(d => d.Id).ShouldBe(expected, $"after {after}, limit {limit}");
            }
        }
        (await store.QueryAfterAsync(Jobs, filter, null, 0, Ct)).ShouldBeEmpty();
    }
}
