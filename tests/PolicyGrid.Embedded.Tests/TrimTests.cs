using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

/// <summary><see cref="IDocumentTrimStore"/> on SQLite: bulk deletion of the oldest documents by id order.</summary>
public sealed class TrimTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly SqliteDocumentStore _store;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public TrimTests() => _store = new SqliteDocumentStore(new SqliteDatabase(_dir.File("policygrid.db")));

    public void Dispose() => _dir.Dispose();

    private static string Id(int n) => $"id-{n:D6}";

    // Inserted in shuffled order: trimming follows id order, not insertion order.
    private async Task AddAsync(string collection, int count)
    {
        var ids = Enumerable.Range(0, count).OrderBy(n => (n * 7919) % count).ToArray();
        await _store.CreateManyAsync(collection, ids, Id, static (w, n) => new JsonObject { ["n"] = n }.WriteTo(w), Ct);
    }

    private async Task<int[]> RemainingAsync(string collection) =>
        [.. (await _store.QueryAsync(collection, DocumentQuery.All(), Ct)).Select(d => d.Body["n"]!.GetValue<int>()).Order()];

    [Fact]
    public async Task Ids_below_the_bound_go_then_all_but_the_newest_kept()
    {
        await AddAsync("decisions", 20);

        (await _store.TrimByIdAsync("decisions", Id(5), null, Ct)).ShouldBe(5);
        (await RemainingAsync("decisions")).ShouldBe(Enumerable.Range(5, 15));

        (await _store.TrimByIdAsync("decisions", null, 10, Ct)).ShouldBe(5);
        (await RemainingAsync("decisions")).ShouldBe(Enumerable.Range(10, 10));

        // Both at once, and nothing more to do the second time.
        (await _store.TrimByIdAsync("decisions", Id(12), 5, Ct)).ShouldBe(5);
        (await RemainingAsync("decisions")).ShouldBe(Enumerable.Range(15, 5));
        (await _store.TrimByIdAsync("decisions", Id(12), 5, Ct)).ShouldBe(0);
    }

    [Fact]
    public async Task A_trim_larger_than_one_transaction_goes_in_several_and_keeps_exactly_the_newest()
    {
        var count = SqliteDocumentStore.TrimChunk * 2 + 7;
        await AddAsync("decisions", count);

        (await _store.TrimByIdAsync("decisions", null, 3, Ct)).ShouldBe(count - 3);

        (await RemainingAsync("decisions")).ShouldBe([count - 3, count - 2, count - 1]);
    }

    [Fact]
    public async Task Keeping_zero_empties_the_collection_and_other_collections_are_untouched()
    {
        await AddAsync("decisions", 4);
        await AddAsync("policies", 4);

        (await _store.TrimByIdAsync("decisions", null, 0, Ct)).ShouldBe(4);

        (await RemainingAsync("decisions")).ShouldBeEmpty();
        (await RemainingAsync("policies")).Length.ShouldBe(4);
    }

    [Fact]
    public async Task Nothing_to_trim_answers_zero()
    {
        (await _store.TrimByIdAsync("never_written", Id(100), 0, Ct)).ShouldBe(0);
        await AddAsync("decisions", 3);
        (await _store.TrimByIdAsync("decisions", null, null, Ct)).ShouldBe(0);
        (await _store.TrimByIdAsync("decisions", Id(0), 3, Ct)).ShouldBe(0);
        (await RemainingAsync("decisions")).Length.ShouldBe(3);
    }

    [Fact]
    public async Task A_negative_number_to_keep_is_refused_and_nothing_is_deleted()
    {
        await AddAsync("decisions", 3);

        var error = await Should.ThrowAsync<ArgumentOutOfRangeException>(() => _store.TrimByIdAsync("decisions", Id(2), -1, Ct));

        error.ParamName.ShouldBe("keepNewest");
        error.Message.ShouldContain("0 or more");
        (await RemainingAsync("decisions")).Length.ShouldBe(3);
    }

    [Fact]
    public async Task A_trim_counts_as_a_change_to_the_collection()
    {
        await AddAsync("decisions", 3);
        var before = _store.ChangesTo("decisions");

        await _store.TrimByIdAsync("decisions", null, 1, Ct);

        _store.ChangesTo("decisions").ShouldBeGreaterThan(before);
    }
}
