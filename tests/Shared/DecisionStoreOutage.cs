using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.TestSupport;

/// <summary>
/// A document store whose decision writes fail while <see cref="Down"/> is set, as a store that refuses them does
/// (a full disk, a state store gone), and reach the real store again once it is cleared; every other collection is the
/// real store's throughout. The real store must take batches (<see cref="IDocumentBatchStore"/>: SQLite and the Dapr store
/// do), so the decision log writes through it as it does in production.
/// </summary>
public sealed class DecisionStoreOutage(IDocumentStore inner) : IDocumentStore, IDocumentBatchStore
{
    public const string Refusal = "the store refused the write (test outage)";

    private int down;

    public bool Down
    {
        get => Volatile.Read(ref down) != 0;
        set => Volatile.Write(ref down, value ? 1 : 0);
    }

    private void RefuseDecisionsWhileDown(string collection)
    {
        if (Down && collection == Collections.Decisions) throw new IOException(Refusal);
    }

    /// <summary>Takes the store down and has <paramref name="log"/> lose one decision, so that it is failing.</summary>
    public async Task LoseADecisionAsync(PolicyGrid.Runtime.Execution.DecisionLog log, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(log);
        Down = true;
        await log.RecordAsync(new PolicyGrid.Runtime.Execution.Decision("execute", "lost:1.0-test", "", "anonymous", "", "", PolicyGrid.Runtime.Execution.Decision.OutcomeResult,
            "", 200, 1, DateTimeOffset.UtcNow));
        await log.FlushAsync(ct);
    }

    /// <summary>
    /// Checks that <paramref name="refused"/> is how a server refuses a call while this outage keeps its decision log from
    /// recording (<c>Decisions:WhenUnrecorded=refuse</c>): 503 <c>backend_unavailable</c>, <c>Retry-After</c> 1, naming the
    /// cause and the setting.
    /// </summary>
    public static void ShouldBeItsRefusal(PolicyGrid.Core.Errors.PolicyGridException refused)
    {
        ArgumentNullException.ThrowIfNull(refused);
        (refused.Status, refused.Code, refused.RetryAfterSeconds).ShouldBe((503, PolicyGrid.Core.Errors.ErrorCodes.BackendUnavailable, 1));
        refused.Message.ShouldStartWith("the decision log cannot record decisions since ");
        refused.Message.ShouldEndWith($": {Refusal}; this executor refuses calls it cannot record (Decisions:WhenUnrecorded=refuse)");
    }

    public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default)
    {
        RefuseDecisionsWhileDown(collection);
        return inner.CreateAsync(collection, id, body, ct);
    }

    public Task CreateManyAsync<T>(string collection, IReadOnlyList<T> items, Func<T, string> id, Action<Utf8JsonWriter, T> write, CancellationToken ct = default)
    {
        RefuseDecisionsWhileDown(collection);
        return ((IDocumentBatchStore)inner).CreateManyAsync(collection, items, id, write, ct);
    }

    public Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) => inner.GetAsync(collection, id, ct);
    public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) => inner.ReplaceAsync(collection, id, body, expectedRevision, ct);
    public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.UpsertAsync(collection, id, body, ct);
    public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => inner.DeleteAsync(collection, id, expectedRevision, ct);
    public Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => inner.QueryAsync(collection, query, ct);
}
