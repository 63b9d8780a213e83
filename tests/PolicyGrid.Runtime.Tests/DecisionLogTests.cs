using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Execution;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

public sealed class DecisionLogTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Directory.CreateTempSubdirectory("pg-decisions-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static Decision Sample(int n) => new("execute", "p:1.0-a", "sha", "anonymous", "p:1.0-a", $"input-{n}", Decision.OutcomeResult, "", 200, 0.1, DateTimeOffset.UtcNow);

    [Fact]
    public async Task Decisions_arriving_within_the_commit_interval_share_one_durable_write()
    {
        var store = new CountingStore(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db"))));
        await using var log = new DecisionLog(store, new DecisionLogOptions { CommitInterval = TimeSpan.FromMilliseconds(300) }, TimeProvider.System, NullLogger<DecisionLog>.Instance);

        for (var i = 0; i < 5; i++) await log.RecordAsync(Sample(i));
        await log.FlushAsync(Ct);

        store.Writes.ShouldBe(1, "five decisions queued within the interval should go to disk in one transaction");
        (await store.QueryAsync(Collections.Decisions, new DocumentQuery(new Core.Querying.AndFilter([]), [], 0, 100), Ct)).Count.ShouldBe(5);
    }

    /// <summary>Counts write transactions (one per CreateAsync, one per CreateManyAsync).</summary>
    private sealed class CountingStore(SqliteDocumentStore inner) : IDocumentStore, IDocumentBatchStore
    {
        public int Writes;

        public Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) => inner.GetAsync(collection, id, ct);

        public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default)
        {
            Interlocked.Increment(ref Writes);
            return inner.CreateAsync(collection, id, body, ct);
        }

        public Task CreateManyAsync(string collection, IReadOnlyList<KeyValuePair<string, JsonObject>> documents, CancellationToken ct = default)
        {
            Interlocked.Increment(ref Writes);
            return inner.CreateManyAsync(collection, documents, ct);
        }

        public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) => inner.ReplaceAsync(collection, id, body, expectedRevision, ct);
        public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.UpsertAsync(collection, id, body, ct);
        public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => inner.DeleteAsync(collection, id, expectedRevision, ct);
        public Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => inner.QueryAsync(collection, query, ct);
    }
}
