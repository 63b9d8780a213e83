using System.Text.Json;
using System.Text.Json.Nodes;
using Dapr.Client;
using NSubstitute;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Documents;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

/// <summary>
/// The Dapr document store's bulk paths, which the decision log takes: a batch is one state transaction and at
/// most one key-index update, and trimming deletes in bulk, in id order, from the index or through the query API.
/// </summary>
public sealed class DaprBulkDocumentTests
{
    private const string Collection = "decisions";
    private readonly FakeStateStore state = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Id(int n) => $"id-{n:D2}";

    private static Task CreateMany(DaprStateDocumentStore store, IEnumerable<int> numbers) =>
        store.CreateManyAsync(Collection, numbers.ToList(), Id, static (w, n) => new JsonObject { ["n"] = n }.WriteTo(w), Ct);

    private List<string> Index() =>
        state.Entries.TryGetValue(StateKeys.Index(Collection), out var e) ? JsonSerializer.Deserialize<KeyIndex>(e.Json)!.Ids : [];

    private IEnumerable<string> StoredIds() =>
        state.Entries.Keys.Where(k => k.StartsWith(Collection + "/", StringComparison.Ordinal)).Select(k => k[(Collection.Length + 1)..]).Order(StringComparer.Ordinal);

    private int IndexWrites() =>
        state.Client.ReceivedCalls().Count(c => c.GetMethodInfo().Name == nameof(DaprClient.TrySaveStateAsync) && c.GetArguments()[2] is KeyIndex);

    [Fact]
    public async Task A_batch_is_one_state_transaction_and_one_index_update()
    {
        var store = state.Store(DocumentQueryMode.KeyIndex);

        await CreateMany(store, Enumerable.Range(0, 5));

        state.Transactions.ShouldBe([5]);
        IndexWrites().ShouldBe(1);
        Index().Order(StringComparer.Ordinal).ShouldBe(Enumerable.Range(0, 5).Select(Id));
        var third = await store.GetAsync(Collection, Id(3), Ct);
        third.ShouldNotBeNull().Body["n"]!.GetValue<int>().ShouldBe(3);
        (await store.QueryAsync(Collection, DocumentQuery.All(), Ct)).Count.ShouldBe(5);
    }

    [Fact]
    public async Task A_batch_without_a_key_index_is_one_transaction_and_touches_no_index()
    {
        await CreateMany(state.Store(DocumentQueryMode.QueryApi), Enumerable.Range(0, 3));

        state.Transactions.ShouldBe([3]);
        IndexWrites().ShouldBe(0);
        StoredIds().ShouldBe(Enumerable.Range(0, 3).Select(Id));
    }

    [Fact]
    public async Task A_batch_with_an_id_that_exists_is_a_409_naming_it_and_writes_nothing()
    {
        var store = state.Store(DocumentQueryMode.KeyIndex);
        await CreateMany(store, [1]);

        var e = await Should.ThrowAsync<PolicyGridException>(() => CreateMany(store, [0, 1, 2]));

        e.Status.ShouldBe(409);
        e.Message.ShouldContain($"'{Id(1)}' already exists");
        state.Transactions.Count.ShouldBe(1);
        StoredIds().ShouldBe([Id(1)]);
        Index().ShouldBe([Id(1)]);
    }

    [Fact]
    public async Task A_batch_naming_one_id_twice_is_a_409_and_writes_nothing()
    {
        var e = await Should.ThrowAsync<PolicyGridException>(() => CreateMany(state.Store(), [4, 4]));

        e.Status.ShouldBe(409);
        e.Message.ShouldContain($"'{Id(4)}' already exists");
        state.Transactions.ShouldBeEmpty();
        StoredIds().ShouldBeEmpty();
    }

    [Fact]
    public async Task A_batch_whose_writer_does_not_write_one_object_is_refused_and_writes_nothing()
    {
        var e = await Should.ThrowAsync<ArgumentException>(() => state.Store().CreateManyAsync(Collection, [1, 2], Id,
            static (w, n) => { if (n == 2) { w.WriteStartArray(); w.WriteEndArray(); } else new JsonObject().WriteTo(w); }, Ct));

        e.Message.ShouldContain($"'{Id(2)}'");
        state.Transactions.ShouldBeEmpty();
        Index().ShouldBeEmpty();
    }

    [Theory]
    [InlineData(DocumentQueryMode.KeyIndex)]
    [InlineData(DocumentQueryMode.QueryApi)]
    public async Task Trimming_deletes_below_the_bound_and_beyond_the_newest_kept_in_bulk(DocumentQueryMode mode)
    {
        state.WithIdQueries();
        var store = state.Store(mode);
        // Written in two batches, out of order: trimming follows id order.
        await CreateMany(store, [7, 2, 9, 0, 5]);
        await CreateMany(store, [3, 8, 1, 6, 4]);

        (await store.TrimByIdAsync(Collection, Id(3), null, Ct)).ShouldBe(3);
        StoredIds().ShouldBe(Enumerable.Range(3, 7).Select(Id));

        (await store.TrimByIdAsync(Collection, Id(4), 4, Ct)).ShouldBe(3);
        StoredIds().ShouldBe(Enumerable.Range(6, 4).Select(Id));
        (await store.TrimByIdAsync(Collection, Id(4), 4, Ct)).ShouldBe(0);

        // QueryPageSize (2 here) keys per bulk delete.
        state.BulkDeletes.ShouldAllBe(n => n <= 2);
        state.BulkDeletes.Sum().ShouldBe(6);
        if (mode == DocumentQueryMode.KeyIndex) Index().Order(StringComparer.Ordinal).ShouldBe(Enumerable.Range(6, 4).Select(Id));
        (await store.QueryAsync(Collection, DocumentQuery.All(), Ct)).Count.ShouldBe(4);
    }

    [Fact]
    public async Task Trimming_through_the_query_api_asks_for_the_collection_sorted_by_id()
    {
        var sent = new List<string>();
        state.WithIdQueries();
        state.Client.When(c => c.QueryStateAsync<StateDocument>(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>()))
            .Do(c => sent.Add(c.ArgAt<string>(1)));
        var store = state.Store(DocumentQueryMode.QueryApi);
        await CreateMany(store, [0, 1, 2]);

        (await store.TrimByIdAsync(Collection, null, 1, Ct)).ShouldBe(2);

        JsonNode.DeepEquals(JsonNode.Parse(sent[0]), JsonNode.Parse("""
            {"filter": {"EQ": {"collection": "decisions"}}, "sort": [{"key": "id", "order": "DESC"}], "page": {"limit": 2}}
            """)).ShouldBeTrue(sent[0]);
        StoredIds().ShouldBe([Id(2)]);
    }

    [Fact]
    public async Task Trimming_with_a_negative_number_to_keep_is_refused_and_deletes_nothing()
    {
        var store = state.Store();
        await CreateMany(store, [0, 1]);

        var e = await Should.ThrowAsync<ArgumentOutOfRangeException>(() => store.TrimByIdAsync(Collection, Id(1), -1, Ct));

        e.ParamName.ShouldBe("keepNewest");
        state.BulkDeletes.ShouldBeEmpty();
        StoredIds().Count().ShouldBe(2);
    }
}

/// <summary>The decision log over the Dapr document store in key-index mode, as the executor app runs it locally.</summary>
public sealed class DaprDecisionLogTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Decisions_go_in_batches_with_one_index_update_each_and_retention_trims_them_in_bulk()
    {
        var state = new FakeStateStore();
        var store = state.Store(DocumentQueryMode.KeyIndex);
        var options = new PolicyGrid.Runtime.DecisionLogOptions { CommitInterval = TimeSpan.FromMilliseconds(200), MaxCount = 10 };
        await using var log = new PolicyGrid.Runtime.Execution.DecisionLog(store, options, TimeProvider.System,
            Microsoft.Extensions.Logging.Abstractions.NullLogger<PolicyGrid.Runtime.Execution.DecisionLog>.Instance);

        for (var i = 0; i < 40; i++)
            await log.RecordAsync(new PolicyGrid.Runtime.Execution.Decision("execute", "p:1.0-a", "sha", "anonymous", "p:1.0-a", $"input-{i}",
                PolicyGrid.Runtime.Execution.Decision.OutcomeResult, "", 200, 0.1, DateTimeOffset.UtcNow.AddMilliseconds(i)));
        await log.FlushAsync(Ct);

        // Queued within one commit interval: a few transactions and index updates, not forty.
        state.Transactions.Sum().ShouldBe(40);
        state.Transactions.Count.ShouldBeLessThan(5);
        var indexWrites = state.Client.ReceivedCalls().Count(c => c.GetMethodInfo().Name == nameof(DaprClient.TrySaveStateAsync) && c.GetArguments()[2] is KeyIndex);
        indexWrites.ShouldBe(state.Transactions.Count);

        (await log.PruneAsync(Ct)).ShouldBe(30);
        var kept = (await store.QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct)).Select(d => d.Body["input_sha256"]!.GetValue<string>()).Order(StringComparer.Ordinal);
        kept.ShouldBe(Enumerable.Range(30, 10).Select(i => $"input-{i}").Order(StringComparer.Ordinal));
        state.BulkDeletes.Sum().ShouldBe(30);
    }
}
