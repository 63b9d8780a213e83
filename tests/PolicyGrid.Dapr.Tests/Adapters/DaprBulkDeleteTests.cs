using System.Text.Json;
using System.Text.Json.Nodes;
using Dapr;
using Dapr.Client;
using Grpc.Core;
using Microsoft.Extensions.Options;
using NSubstitute;
using NSubstitute.ExceptionExtensions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Dapr.Documents;
using Shouldly;
using SortDirection = PolicyGrid.Core.Ports.SortDirection;

namespace PolicyGrid.Dapr.Tests.Adapters;

/// <summary>
/// Retention's deletes on the Dapr document store (<see cref="IDocumentBulkDeleteStore"/>): bulk reads and deletes and one
/// key-index update per batch, where one <see cref="IDocumentStore.DeleteAsync"/> per document rewrote the whole index for
/// each. Each case is checked against the one-at-a-time path on the same data.
/// </summary>
public sealed class DaprBulkDeleteTests
{
    private const string Runs = Collections.GraphExecutions;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Id(int n) => $"run-{n:D2}";

    private static readonly FilterNode Finished = FilterParser.Parse(JsonNode.Parse("""{"finished": true}"""));

    // 30 runs, the even ones finished, created one at a time (so the key index holds them all); pages of 2 (the fixture's).
    private static async Task<(FakeStateStore State, DaprStateDocumentStore Store)> RunsAsync(DocumentQueryMode mode)
    {
        var state = new FakeStateStore().WithIdQueries();
        var store = state.Store(mode);
        // Created out of id order: nothing below may depend on the index being sorted.
        foreach (var n in Enumerable.Range(0, 30).Select(i => (i * 7) % 30))
            await store.CreateAsync(Runs, Id(n), new JsonObject { ["n"] = n, ["finished"] = n % 2 == 0 }, Ct);
        return (state, store);
    }

    private static List<string> StoredIds(FakeStateStore state) =>
        [.. state.Entries.Keys.Where(k => k.StartsWith(Runs + StateKeys.Separator, StringComparison.Ordinal)).Select(k => k[(Runs.Length + 1)..]).Order(StringComparer.Ordinal)];

    private static List<string>? Index(FakeStateStore state) =>
        state.Entries.TryGetValue(StateKeys.Index(Runs), out var e) ? [.. JsonSerializer.Deserialize<KeyIndex>(e.Json)!.Ids.Order(StringComparer.Ordinal)] : null;

    private static int IndexWrites(FakeStateStore state) =>
        state.Client.ReceivedCalls().Count(c => c.GetMethodInfo().Name == nameof(DaprClient.TrySaveStateAsync) && c.GetArguments()[2] is KeyIndex);

    private static async Task<List<string>> QueriedIds(IDocumentStore store) =>
        [.. (await store.QueryAsync(Runs, DocumentQuery.All(), Ct)).Select(d => d.Id).Order(StringComparer.Ordinal)];

    private sealed record Outcome(int Removed, List<string> TakenByOther, List<string> Stored, List<string>? Index, List<string> Queried, int IndexWrites);

    // A sweep of the finished runs while another writer (another replica's retention) deletes some of each page it lists,
    // after the list was taken and before the sweep deletes them.
    private static async Task<Outcome> SweepAsync(DocumentQueryMode mode, bool bulk)
    {
        var (state, store) = await RunsAsync(mode);
        var writesBefore = IndexWrites(state);
        var racing = bulk ? new RacingBulk(store) : new Racing(store);

        var removed = await DocumentPruning.DeleteMatchingAsync(racing, Runs, Finished, Ct);

        return new(removed, racing.TakenByOther, StoredIds(state), Index(state), await QueriedIds(store), IndexWrites(state) - writesBefore);
    }

    [Theory]
    [InlineData(DocumentQueryMode.KeyIndex)]
    [InlineData(DocumentQueryMode.QueryApi)]
    public async Task A_sweep_removes_in_bulk_what_one_at_a_time_removed_and_counts_no_run_another_writer_deleted(DocumentQueryMode mode)
    {
        var one = await SweepAsync(mode, bulk: false);
        var bulk = await SweepAsync(mode, bulk: true);

        var odd = Enumerable.Range(0, 30).Where(n => n % 2 == 1).Select(Id).ToList();
        bulk.TakenByOther.Count.ShouldBe(4);
        bulk.TakenByOther.ShouldBe(one.TakenByOther);
        bulk.Removed.ShouldBe(15 - 4);
        bulk.Removed.ShouldBe(one.Removed);
        bulk.Stored.ShouldBe(odd);
        bulk.Stored.ShouldBe(one.Stored);
        bulk.Queried.ShouldBe(odd);
        bulk.Queried.ShouldBe(one.Queried);
        bulk.Index.ShouldBe(one.Index);
        if (mode == DocumentQueryMode.KeyIndex)
        {
            bulk.Index.ShouldBe(odd);
            // One index rewrite per deleted run before; now one per sweep page (plus the other writer's own four).
            one.IndexWrites.ShouldBe(4 + 11);
            bulk.IndexWrites.ShouldBe(4 + 1);
        }
        else
        {
            bulk.Index.ShouldBeNull();
            bulk.IndexWrites.ShouldBe(0);
        }
    }

    [Theory]
    [InlineData(DocumentQueryMode.KeyIndex)]
    [InlineData(DocumentQueryMode.QueryApi)]
    public async Task Deleting_many_answers_each_run_that_existed_once_as_one_at_a_time_counted_them(DocumentQueryMode mode)
    {
        // Deleted before (never to be counted), never written, and named twice.
        string[] ids = [Id(3), Id(4), "run-unknown", Id(3), Id(5), Id(20), Id(4)];
        var (oneState, oneStore) = await RunsAsync(mode);
        await oneStore.DeleteAsync(Runs, Id(5), null, Ct);
        var oneCount = 0;
        foreach (var id in ids)
            if (await oneStore.DeleteAsync(Runs, id, null, Ct) is not null) oneCount++;
        var (state, store) = await RunsAsync(mode);
        await store.DeleteAsync(Runs, Id(5), null, Ct);
        var writesBefore = IndexWrites(state);

        var deleted = await store.DeleteManyAsync(Runs, ids, Ct);

        deleted.ShouldBe([Id(3), Id(4), Id(20)]);
        deleted.Count.ShouldBe(oneCount);
        StoredIds(state).ShouldBe(StoredIds(oneState));
        StoredIds(state).ShouldNotContain(Id(20));
        StoredIds(state).Count.ShouldBe(26);
        Index(state).ShouldBe(Index(oneState));
        IndexWrites(state).ShouldBe(mode == DocumentQueryMode.KeyIndex ? writesBefore + 1 : 0);
        (await QueriedIds(store)).ShouldBe(await QueriedIds(oneStore));
    }

    [Theory]
    [InlineData(DocumentQueryMode.KeyIndex)]
    [InlineData(DocumentQueryMode.QueryApi)]
    public async Task Deleting_no_ids_answers_none_and_calls_no_sidecar(DocumentQueryMode mode)
    {
        var (state, store) = await RunsAsync(mode);
        int Writes() => state.Client.ReceivedCalls().Count(c => c.GetMethodInfo().Name is nameof(DaprClient.DeleteBulkStateAsync) or nameof(DaprClient.TrySaveStateAsync));
        var writes = Writes();
        var calls = state.Client.ReceivedCalls().Count();

        (await store.DeleteManyAsync(Runs, [], Ct)).ShouldBeEmpty();
        state.Client.ReceivedCalls().Count().ShouldBe(calls);
        (await DocumentPruning.DeleteBeyondAsync(store, Runs, Finished, new SortKey("n", SortDirection.Asc), 15, Ct)).ShouldBe(0);

        state.BulkDeletes.ShouldBeEmpty();
        StoredIds(state).Count.ShouldBe(30);
        Index(state)?.Count.ShouldBe(30);
        Writes().ShouldBe(writes);
    }

    [Fact]
    public async Task A_sweep_of_2500_runs_rewrites_the_key_index_once_per_page_not_once_per_run()
    {
        var state = new FakeStateStore();
        var ids = Enumerable.Range(0, 2500).Select(n => $"run-{n:D4}").ToList();
        foreach (var id in ids) state.Put(StateKeys.Document(Runs, id), new StateDocument(Runs, id, "r-" + id, new JsonObject { ["finished"] = true }));
        state.Put(StateKeys.Index(Runs), new KeyIndex(ids));
        var store = new DaprStateDocumentStore(state.Client, Options.Create(new DaprOptions { DocumentQueries = DocumentQueryMode.KeyIndex, QueryPageSize = 500 }));

        (await DocumentPruning.DeleteMatchingAsync(store, Runs, Finished, Ct)).ShouldBe(2500);

        // One at a time it was 2,500 rewrites of a list of up to 2,500 ids (34 MB on this fake, ~2 s); now one per page of
        // 1,000 the sweep lists, each in pages of 500 bulk deletes.
        IndexWrites(state).ShouldBe(3);
        state.BulkDeletes.ShouldBe([500, 500, 500, 500, 500]);
        StoredIds(state).ShouldBeEmpty();
        Index(state).ShouldBeEmpty();
    }

    [Theory]
    [InlineData(StatusCode.Internal, 502)]
    [InlineData(StatusCode.Unavailable, 503)]
    public async Task A_bulk_delete_failing_part_way_is_translated_and_leaves_in_the_index_every_run_it_may_not_have_deleted(StatusCode code, int status)
    {
        var (state, store) = await RunsAsync(DocumentQueryMode.KeyIndex);
        var calls = 0;
        // The second page (of 2) fails after deleting its first key, as daprd's bulk delete (one delete per key) can.
        state.Client.DeleteBulkStateAsync(Arg.Any<string>(), Arg.Any<IReadOnlyList<BulkDeleteStateItem>>(), Arg.Any<CancellationToken>())
            .Returns(c =>
            {
                var items = c.ArgAt<IReadOnlyList<BulkDeleteStateItem>>(1);
                foreach (var item in ++calls == 2 ? items.Take(1) : items) state.Entries.Remove(item.Key);
                return calls == 2 ? throw new DaprException("State operation failed", new RpcException(new Status(code, "mongo: connection reset"))) : Task.CompletedTask;
            });

        var e = await Should.ThrowAsync<PolicyGridException>(() => store.DeleteManyAsync(Runs, [.. Enumerable.Range(0, 6).Select(Id)], Ct));

        e.Status.ShouldBe(status);
        e.Message.ShouldContain(DaprNames.Components.DocumentStore);
        calls.ShouldBe(2);
        StoredIds(state).ShouldBe(Enumerable.Range(3, 27).Select(Id));
        // The first page left the index; the failed page stayed (run-02 reads as missing), and so did what came after.
        Index(state).ShouldBe(Enumerable.Range(2, 28).Select(Id));
        (await QueriedIds(store)).ShouldBe(Enumerable.Range(3, 27).Select(Id));
    }

    [Fact]
    public async Task A_bulk_read_failing_is_a_502_and_deletes_nothing()
    {
        var (state, store) = await RunsAsync(DocumentQueryMode.KeyIndex);
        state.Client.GetBulkStateAsync(Arg.Any<string>(), Arg.Any<IReadOnlyList<string>>(), Arg.Any<int?>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(new DaprException("State operation failed", new RpcException(new Status(StatusCode.Internal, "mongo: server selection timeout"))));

        var e = await Should.ThrowAsync<PolicyGridException>(() => store.DeleteManyAsync(Runs, [Id(0), Id(1)], Ct));

        e.Status.ShouldBe(502);
        e.Message.ShouldContain("server selection timeout");
        state.BulkDeletes.ShouldBeEmpty();
        StoredIds(state).Count.ShouldBe(30);
        Index(state)!.Count.ShouldBe(30);
    }

    /// <summary>The store as a plain <see cref="IDocumentStore"/> (retention deletes one at a time) that races another deleter.</summary>
    private class Racing(DaprStateDocumentStore inner) : PlainDocumentStore(inner)
    {
        protected DaprStateDocumentStore Inner { get; } = inner;

        /// <summary>Runs the other writer deleted between the sweep's listing and its deletes.</summary>
        public List<string> TakenByOther { get; } = [];

        public override async Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default)
        {
            var page = await base.QueryAsync(collection, query, ct);
            foreach (var doc in page.Where((_, i) => i % 4 == 0))
                if (await DeleteAsync(collection, doc.Id, null, ct) is not null) TakenByOther.Add(doc.Id);
            return page;
        }
    }

    private sealed class RacingBulk(DaprStateDocumentStore inner) : Racing(inner), IDocumentBulkDeleteStore
    {
        public Task<IReadOnlyList<string>> DeleteManyAsync(string collection, IReadOnlyList<string> ids, CancellationToken ct = default) => Inner.DeleteManyAsync(collection, ids, ct);
    }
}
