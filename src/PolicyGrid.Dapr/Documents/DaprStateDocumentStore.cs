using System.Text.Json;
using System.Text.Json.Nodes;
using Dapr.Client;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Dapr.Documents;

/// <summary>
/// <see cref="IDocumentStore"/> over the Dapr state store <see cref="DaprNames.Components.DocumentStore"/>
/// (state.mongodb in production, state.redis locally).
/// <list type="bullet">
/// <item>Keys: <c>{collection}/{id}</c> (<see cref="StateKeys"/>); the value is a <see cref="StateDocument"/>.</item>
/// <item>Concurrency: every conditional write passes the store's ETag with first-write concurrency, so
/// a writer that lost a race gets a 409 instead of overwriting. The revision answered to callers is
/// our own token stored in the entry; If-Match is compared with it before the conditional write.</item>
/// <item>Queries: <see cref="DocumentQueryMode.QueryApi"/> pushes EQ/IN/AND/OR and sort down to the
/// state query API and pages with its token; <see cref="DocumentQueryMode.KeyIndex"/> keeps an id
/// list per collection and reads documents in bulk: in id order, a chunk at a time until the page is full, when the query
/// is sorted by id (or not at all), so a page costs the documents up to it rather than the whole collection; both apply
/// Core's filter to every result. A walk over a collection (<see cref="IDocumentSeekStore"/>) starts each page after the
/// last id of the one before.</item>
/// <item>Bulk (the decision log): <see cref="CreateManyAsync{T}"/> writes a batch in one state transaction with
/// one index update, and <see cref="TrimByIdAsync"/> deletes in bulk with one index update, instead of a
/// read-modify-write of the whole index for every document.</item>
/// <item>Retention by rank (<see cref="IdsBeyondAsync"/>): every match after the first N in one pass, where paging at skip N
/// read the N again for every page.</item>
/// <item>Retention's deletes (<see cref="DeleteManyAsync"/>): bulk reads and bulk deletes a page at a time, then one index
/// update, where deleting one at a time rewrote the whole index for every document.</item>
/// </list>
/// </summary>
public sealed class DaprStateDocumentStore(DaprClient dapr, IOptions<DaprOptions> options) : IDocumentStore, IDocumentBatchStore, IDocumentTrimStore, IDocumentSeekStore, IDocumentRankStore, IDocumentBulkDeleteStore
{
    private const string Store = DaprNames.Components.DocumentStore;
    private const int IndexAttempts = 8;

    private static readonly StateOptions FirstWrite = new() { Concurrency = ConcurrencyMode.FirstWrite, Consistency = ConsistencyMode.Strong };

    /// <summary>
    /// The metadata every document write carries in <see cref="DocumentQueryMode.QueryApi"/> mode. The SDK sends a value as
    /// bytes over gRPC; daprd parses them as JSON only when the item's <c>contentType</c> is <c>application/json</c>
    /// (dapr/dapr pkg/api/grpc/grpc.go SaveState, v1.18.3; state.mongodb's transactions likewise, components-contrib
    /// state/mongodb/mongodb.go doTransaction, v1.18.4). Without it state.mongodb stores the entry as one string, on which
    /// the query API's <c>value.collection</c> filter matches nothing: every list answered empty.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> JsonContent = new Dictionary<string, string> { ["contentType"] = "application/json" };

    private DaprOptions Options => options.Value;

    // Key-index mode keeps the SDK's bytes as they are: nothing queries inside them.
    private IReadOnlyDictionary<string, string>? WriteMetadata => Options.DocumentQueries == DocumentQueryMode.QueryApi ? JsonContent : null;

    /// <summary>
    /// In <see cref="DocumentQueryMode.QueryApi"/> mode every value is sent as <c>{"$literal": value}</c>. state.mongodb
    /// writes the value into an aggregation-pipeline update (<c>$set: {value: ...}</c>, components-contrib
    /// state/mongodb/mongodb.go setInternal, v1.18.4), where a string starting with <c>$</c> is read as a field path and an
    /// object key starting with <c>$</c> as an operator: a policy whose description says "$5 per call" would be stored with
    /// that field missing, and one holding a JSON Schema <c>$ref</c> refused. MongoDB's own answer is <c>$literal</c>
    /// ("Updates with Aggregation Pipeline": such values "must be passed to the $literal aggregation operator"), which
    /// stores what it holds unparsed: reads and queries then see the document itself.
    /// </summary>
    private bool Literal => Options.DocumentQueries == DocumentQueryMode.QueryApi;

    private Task<bool> TrySaveAsync<T>(string key, T value, string etag, CancellationToken ct) => Literal
        ? dapr.TrySaveStateAsync(Store, key, new MongoLiteral<T>(value), etag, FirstWrite, WriteMetadata, ct)
        : dapr.TrySaveStateAsync(Store, key, value, etag, FirstWrite, WriteMetadata, ct);

    public async Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default)
    {
        var (entry, _) = await ReadAsync(collection, id, ct);
        return entry is null ? null : ToStored(entry);
    }

    public async Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default)
    {
        var entry = NewEntry(collection, id, body);
        if (Options.DocumentQueries == DocumentQueryMode.KeyIndex) await AddToIndexAsync(collection, id, ct);
        bool saved;
        try
        {
            // An empty ETag with first-write concurrency means "only if the key does not exist yet".
            saved = await TrySaveAsync(StateKeys.Document(collection, id), entry, "", ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            // Some stores report a lost first-write race as a plain error rather than an ETag mismatch:
            // if the key exists now, it was a duplicate; otherwise the store really failed.
            if (!SidecarFailures.IsUnavailable(e) && (await ReadAsync(collection, id, ct)).Entry is { } there)
                return there.Revision == entry.Revision ? ToStored(entry) : throw DocumentStoreProblems.Duplicate(collection, id);
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
        if (!saved && !await LandedAsync(collection, id, entry, ct)) throw DocumentStoreProblems.Duplicate(collection, id);
        return ToStored(entry);
    }

    /// <summary>
    /// Whether the entry a write was refused for is there after all: daprd's resiliency policy retries a state call that
    /// timed out (deploy/base/resiliency.yaml), and when the first attempt had landed the retry meets its own ETag and is
    /// refused. Each entry carries a fresh revision, so finding it means this write is the one stored: the caller's create
    /// or update succeeded and is no 409.
    /// </summary>
    private async Task<bool> LandedAsync(string collection, string id, StateDocument entry, CancellationToken ct) =>
        (await ReadAsync(collection, id, ct)).Entry?.Revision == entry.Revision;

    public async Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default)
    {
        var (current, etag) = await ReadAsync(collection, id, ct);
        if (current is null) throw DocumentStoreProblems.Missing(collection, id);
        if (expectedRevision is not null && expectedRevision != current.Revision) throw DocumentStoreProblems.ChangedSince(collection, id, expectedRevision, current.Revision);
        var entry = NewEntry(collection, id, body);
        if (!await TryWriteAsync(StateKeys.Document(collection, id), entry, etag, ct) && !await LandedAsync(collection, id, entry, ct))
            throw Problems.Conflict($"{DocumentStoreProblems.Singular(collection)} '{id}' was changed by another writer at the same time; read it again and retry");
        return ToStored(entry);
    }

    public async Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default)
    {
        var entry = NewEntry(collection, id, body);
        if (Options.DocumentQueries == DocumentQueryMode.KeyIndex) await AddToIndexAsync(collection, id, ct);
        var key = StateKeys.Document(collection, id);
        // One writer by definition (job progress and the like): last write wins. Still written with the ETag just read:
        // state.redis refuses a write without the key's ETag once the key was written with first-write concurrency, as
        // CreateAsync writes it (components-contrib state/redis/redis.go, setDefaultQuery's "first-write" field, v1.18.4),
        // so a created graph execution could never be recorded as finished. A write that raced another is tried again.
        for (var attempt = 0; attempt < IndexAttempts; attempt++)
        {
            var (_, etag) = await ReadAsync(collection, id, ct);
            if (await TryWriteAsync(key, entry, etag, ct) || await LandedAsync(collection, id, entry, ct)) return ToStored(entry);
        }
        throw Problems.BackendUnavailable($"{DocumentStoreProblems.Singular(collection)} '{id}' in '{Store}' kept changing under concurrent writers; retry");
    }

    public async Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default)
    {
        var (current, etag) = await ReadAsync(collection, id, ct);
        if (current is null) return null;
        if (expectedRevision is not null && expectedRevision != current.Revision) throw DocumentStoreProblems.ChangedSince(collection, id, expectedRevision, current.Revision);
        bool deleted;
        try
        {
            deleted = await dapr.TryDeleteStateAsync(Store, StateKeys.Document(collection, id), etag ?? "", FirstWrite, cancellationToken: ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
        // A refusal with the document gone: daprd retried a delete that had landed (or another writer deleted it too).
        if (!deleted && (await ReadAsync(collection, id, ct)).Entry is not null) throw Problems.Conflict($"{DocumentStoreProblems.Singular(collection)} '{id}' was changed by another writer while it was being deleted; read it again and retry");
        // The index entry goes after the document: a crash in between leaves an id that reads as missing, which queries skip.
        if (Options.DocumentQueries == DocumentQueryMode.KeyIndex) await RemoveFromIndexAsync(collection, id, ct);
        return ToStored(current);
    }

    public async Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default)
    {
        var skip = Math.Max(0, query.Skip);
        var limit = Math.Clamp(query.Limit, 0, DocumentQuery.MaxLimit);
        if (limit == 0) return [];
        return Options.DocumentQueries == DocumentQueryMode.QueryApi
            ? await QueryWithApiAsync(collection, query, skip, limit, null, ct)
            : await QueryWithIndexAsync(collection, query, skip, limit, null, ct);
    }

    /// <summary>
    /// The query sorted by id with every id up to <paramref name="afterId"/> left out before anything is read: with a key
    /// index, the ids after it are read in order until <paramref name="limit"/> match; through the query API (which has no
    /// range condition) the pages up to it are still read, as a skip would.
    /// </summary>
    public async Task<IReadOnlyList<StoredDocument>> QueryAfterAsync(string collection, FilterNode filter, string? afterId, int limit, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(filter);
        var query = new DocumentQuery(filter, [SortKey.ById(SortDirection.Asc)], 0, Math.Clamp(limit, 0, DocumentQuery.MaxLimit));
        if (query.Limit == 0) return [];
        return Options.DocumentQueries == DocumentQueryMode.QueryApi
            ? await QueryWithApiAsync(collection, query, 0, query.Limit, afterId, ct)
            : await QueryWithIndexAsync(collection, query, 0, query.Limit, afterId, ct);
    }

    /// <summary>
    /// One pass over the matches: with a key index none is read when the collection holds no more than
    /// <paramref name="keep"/> documents, else each once; through the query API, in the store's order, the first
    /// <paramref name="keep"/> matches are counted past (the API has no offset) and only the ids after them kept.
    /// </summary>
    public async Task<IReadOnlyList<string>> IdsBeyondAsync(string collection, FilterNode filter, SortKey order, int keep, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentNullException.ThrowIfNull(order);
        ArgumentOutOfRangeException.ThrowIfNegative(keep);
        var query = new DocumentQuery(filter, [order], keep, int.MaxValue);
        if (Options.DocumentQueries == DocumentQueryMode.KeyIndex)
            return (await QueryWithIndexAsync(collection, query, keep, int.MaxValue, null, ct)).Select(d => d.Id).ToList();
        if (StateQueryTranslator.Sort(query.Sort) is not { } storeSort)
            return (await QueryWithApiAsync(collection, query, keep, int.MaxValue, null, ct)).Select(d => d.Id).ToList();
        var ids = new List<string>();
        var counted = 0;
        var budget = query.BudgetFor(ct);
        string? token = null;
        do
        {
            var page = await QueryPageAsync(StateQueryTranslator.Query(collection, filter, storeSort, Options.QueryPageSize, token), ct);
            foreach (var item in page.Results)
                if (item.Data is { } entry && entry.Collection == collection && budget.Matches(filter, entry.Doc) && ++counted > keep)
                    ids.Add(entry.Id);
            token = page.Results.Count == 0 ? null : page.Token;
        }
        while (!string.IsNullOrEmpty(token));
        return ids;
    }

    /// <summary>
    /// Inserts the batch in one state transaction (all or nothing on a transactional store), after one bulk read
    /// that answers 409 if any id already exists and, with a key index, one index update for the whole batch.
    /// Meant for fresh ids (the decision log's): a document created under the same id by another writer between
    /// the check and the transaction is overwritten.
    /// </summary>
    public async Task CreateManyAsync<T>(string collection, IReadOnlyList<T> items, Func<T, string> id, Action<Utf8JsonWriter, T> write, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(items);
        var entries = new List<StateDocument>(items.Count);
        DocumentBodies.WriteEach(collection, items, id, write, (key, json) =>
            entries.Add(Entry(collection, key, JsonNode.Parse(json)!.AsObject())));
        if (entries.Count == 0) return;
        var keys = entries.Select(e => StateKeys.Document(collection, e.Id)).ToList();
        if (entries.GroupBy(e => e.Id, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1) is { } twice) throw DocumentStoreProblems.Duplicate(collection, twice.Key);
        IReadOnlyList<BulkStateItem> existing;
        try
        {
            existing = await dapr.GetBulkStateAsync(Store, keys, parallelism: 8, cancellationToken: ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
        // BulkStateItem is a struct: pick the key, so that "none" is null.
        if (existing.Where(i => !string.IsNullOrEmpty(i.Value)).Select(i => i.Key).FirstOrDefault() is { } taken)
            throw DocumentStoreProblems.Duplicate(collection, entries[keys.IndexOf(taken)].Id);
        if (Options.DocumentQueries == DocumentQueryMode.KeyIndex)
        {
            await UpdateIndexAsync(collection, ids =>
            {
                var known = new HashSet<string>(ids, StringComparer.Ordinal);
                var before = ids.Count;
                ids.AddRange(entries.Select(e => e.Id).Where(known.Add));
                return ids.Count > before;
            }, ct);
        }
        var operations = entries.Select((e, i) => new StateTransactionRequest(keys[i],
            Literal ? JsonSerializer.SerializeToUtf8Bytes(new MongoLiteral<StateDocument>(e)) : JsonSerializer.SerializeToUtf8Bytes(e), StateOperationType.Upsert, metadata: WriteMetadata)).ToList();
        try
        {
            await dapr.ExecuteStateTransactionAsync(Store, operations, cancellationToken: ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
    }

    /// <summary>
    /// Finds the ids to delete in id order (from the key index, or through the query API sorted by id), deletes
    /// them in bulk, a page at a time, then removes them from the key index in one update.
    /// </summary>
    public async Task<int> TrimByIdAsync(string collection, string? idsBelow, int? keepNewest, CancellationToken ct = default)
    {
        if (keepNewest < 0) throw new ArgumentOutOfRangeException(nameof(keepNewest), keepNewest, "the number of documents to keep must be 0 or more");
        if (idsBelow is null && keepNewest is null) return 0;
        var doomed = Options.DocumentQueries == DocumentQueryMode.KeyIndex
            ? await DoomedFromIndexAsync(collection, idsBelow, keepNewest, ct)
            : await DoomedFromQueriesAsync(collection, idsBelow, keepNewest, ct);
        if (doomed.Count == 0) return 0;
        foreach (var page in doomed.Chunk(Math.Max(1, Options.QueryPageSize))) await DeleteBulkAsync(collection, page, ct);
        // As in DeleteAsync, the index entries go after the documents: an id whose document is gone reads as missing.
        if (Options.DocumentQueries == DocumentQueryMode.KeyIndex) await RemoveFromIndexAsync(collection, doomed, ct);
        return doomed.Count;
    }

    /// <summary>
    /// A page at a time (<see cref="DaprOptions.QueryPageSize"/>): one bulk read finds which documents exist, one bulk
    /// delete removes those; then, with a key index, one update removes every deleted id from it. Only the ids found
    /// existing are deleted, answered and taken out of the index: an id another writer deleted meanwhile is its to count,
    /// and one whose document is missing because its create is still under way (the index entry is written first) stays.
    /// </summary>
    public async Task<IReadOnlyList<string>> DeleteManyAsync(string collection, IReadOnlyList<string> ids, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var deleted = new List<string>();
        try
        {
            foreach (var page in ids.Distinct(StringComparer.Ordinal).Chunk(Math.Max(1, Options.QueryPageSize)))
            {
                var existing = await ExistingAsync(collection, page, ct);
                if (existing.Count == 0) continue;
                await DeleteBulkAsync(collection, existing, ct);
                deleted.AddRange(existing);
            }
        }
        catch (PolicyGridException) when (Options.DocumentQueries == DocumentQueryMode.KeyIndex && deleted.Count > 0)
        {
            // The pages deleted before the failure leave the index; the failed page's ids stay in it (any of its documents
            // that did go read as missing, which queries skip), so no document still there is lost to queries.
            await RemoveFromIndexAsync(collection, deleted, ct);
            throw;
        }
        // As in DeleteAsync, the index entries go after the documents: an id whose document is gone reads as missing.
        if (Options.DocumentQueries == DocumentQueryMode.KeyIndex && deleted.Count > 0) await RemoveFromIndexAsync(collection, deleted, ct);
        return deleted;
    }

    // The ids of the page whose documents exist, in the page's order.
    private async Task<List<string>> ExistingAsync(string collection, IReadOnlyList<string> ids, CancellationToken ct)
    {
        IReadOnlyList<BulkStateItem> items;
        try
        {
            items = await dapr.GetBulkStateAsync(Store, ids.Select(id => StateKeys.Document(collection, id)).ToList(), parallelism: 8, cancellationToken: ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
        var found = items.Where(i => !string.IsNullOrEmpty(i.Value)).Select(i => i.Key).ToHashSet(StringComparer.Ordinal);
        return ids.Where(id => found.Contains(StateKeys.Document(collection, id))).ToList();
    }

    /// <summary>
    /// Deletes the documents of <paramref name="ids"/> in one <c>DeleteBulkState</c> call, with no ETag (the SDK sends none
    /// for null): unconditional, and a key already gone is no error (state.redis deletes with ETag "0", which matches any;
    /// state.mongodb's DeleteOne without an ETag filter finds nothing and succeeds). Not a state transaction: state.mongodb
    /// runs transactions only on a replica set (its Multi refuses a standalone server), where daprd's bulk delete works on
    /// both, one delete per key; it is not atomic, so a failure may leave part of the page deleted.
    /// </summary>
    private async Task DeleteBulkAsync(string collection, IReadOnlyList<string> ids, CancellationToken ct)
    {
        try
        {
            await dapr.DeleteBulkStateAsync(Store, ids.Select(id => new BulkDeleteStateItem(StateKeys.Document(collection, id), null!)).ToList(), ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
    }

    private async Task<List<string>> DoomedFromIndexAsync(string collection, string? idsBelow, int? keepNewest, CancellationToken ct)
    {
        var (index, _) = await ReadIndexAsync(collection, ct);
        var ids = (index?.Ids ?? []).Order(StringComparer.Ordinal).ToList();
        var cut = idsBelow is null ? 0 : ids.Count(id => string.CompareOrdinal(id, idsBelow) < 0);
        if (keepNewest is { } keep) cut = Math.Max(cut, ids.Count - keep);
        return ids.GetRange(0, cut);
    }

    private async Task<List<string>> DoomedFromQueriesAsync(string collection, string? idsBelow, int? keepNewest, CancellationToken ct)
    {
        var doomed = new List<string>();
        if (idsBelow is not null)
        {
            await foreach (var id in IdsInOrderAsync(collection, descending: false, ct))
            {
                if (string.CompareOrdinal(id, idsBelow) >= 0) break;
                doomed.Add(id);
            }
        }
        if (keepNewest is { } keep)
        {
            var seen = 0;
            await foreach (var id in IdsInOrderAsync(collection, descending: true, ct))
            {
                if (idsBelow is not null && string.CompareOrdinal(id, idsBelow) < 0) break; // already listed above
                if (++seen > keep) doomed.Add(id);
            }
        }
        return doomed;
    }

    // Every id of the collection through the query API, sorted by the entry's id, a page at a time.
    private async IAsyncEnumerable<string> IdsInOrderAsync(string collection, bool descending, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        var sort = new JsonArray(new JsonObject { ["key"] = "id", ["order"] = descending ? "DESC" : "ASC" });
        string? token = null;
        do
        {
            StateQueryResponse<StateDocument> page;
            try
            {
                page = await dapr.QueryStateAsync<StateDocument>(Store, StateQueryTranslator.Query(collection, new AndFilter([]), sort, Options.QueryPageSize, token), cancellationToken: ct);
            }
            catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
            {
                throw SidecarFailures.Translate(e, $"state query on '{Store}'");
            }
            foreach (var item in page.Results)
                if (item.Data is { } entry && entry.Collection == collection) yield return entry.Id;
            token = page.Results.Count == 0 ? null : page.Token;
        }
        while (!string.IsNullOrEmpty(token));
    }

    // afterId: only with the query sorted by id ascending (QueryAfterAsync).
    private async Task<IReadOnlyList<StoredDocument>> QueryWithApiAsync(string collection, DocumentQuery query, int skip, int limit, string? afterId, CancellationToken ct)
    {
        var storeSort = StateQueryTranslator.Sort(query.Sort);
        // When the store orders the results, we can stop after skip+limit matches; otherwise we must see them all.
        var storeOrders = query.Sort.Count == 0 || storeSort is not null;
        var wanted = (long)skip + limit;
        var matches = new List<StateDocument>();
        var budget = query.BudgetFor(ct);
        string? token = null;
        do
        {
            var page = await QueryPageAsync(StateQueryTranslator.Query(collection, query.Filter, storeSort, Options.QueryPageSize, token), ct);
            foreach (var item in page.Results)
                if (item.Data is { } entry && entry.Collection == collection && (afterId is null || DocumentOrder.CompareIds(entry.Id, afterId) > 0)
                    && budget.Matches(query.Filter, entry.Doc))
                    matches.Add(entry);
            token = page.Results.Count == 0 ? null : page.Token;
        }
        while (!string.IsNullOrEmpty(token) && (!storeOrders || matches.Count < wanted));
        IEnumerable<StateDocument> ordered = storeOrders ? matches : Order(matches, query.Sort);
        return ordered.Skip(skip).Take(limit).Select(ToStored).Select(d => d with { Body = IntegralAsRead(d.Body) }).ToList();
    }

    private async Task<StateQueryResponse<StateDocument>> QueryPageAsync(string json, CancellationToken ct)
    {
        try
        {
            return await dapr.QueryStateAsync<StateDocument>(Store, json, cancellationToken: ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"state query on '{Store}' (PolicyGrid:Dapr:DocumentQueries=QueryApi needs a store with the query API; use KeyIndex otherwise)");
        }
    }

    /// <summary>
    /// state.mongodb keeps every JSON number as a double and answers a state query in relaxed extended JSON
    /// (components-contrib state/mongodb/mongodb_query.go, bson.MarshalExtJSON, v1.18.4), which writes an integral double
    /// as <c>2.0</c>, while a read (decodeData, encoding/json) answers <c>2</c>: a list answered <c>"replicas": 2.0</c>
    /// where a GET answered 2, and a client decoding into an integer (Go's encoding/json, for one) refused it. Numbers a
    /// query answers as <c>N.0</c> are given back as a read gives them.
    /// </summary>
    internal static JsonObject IntegralAsRead(JsonObject doc)
    {
        foreach (var (key, value) in doc.ToList())
            if (IntegralOrWalk(value) is { } plain) doc[key] = plain;
        return doc;
    }

    // The integer a number written N.0 is (null: not one, or a container walked in place).
    private static JsonNode? IntegralOrWalk(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                IntegralAsRead(o);
                return null;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++)
                    if (IntegralOrWalk(a[i]) is { } plain) a[i] = plain;
                return null;
            case JsonValue v when v.GetValueKind() == JsonValueKind.Number:
                var text = v.ToJsonString();
                var dot = text.IndexOf('.');
                // Up to 15 digits: a double holds every such integer exactly, so the value does not change.
                return dot is > 0 and <= 16 && text.AsSpan(dot + 1).TrimStart('0').IsEmpty && text.Length > dot + 1
                    && long.TryParse(text.AsSpan(0, dot), System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var whole)
                    ? JsonValue.Create(whole) : null;
            default:
                return null;
        }
    }

    /// <summary>
    /// A query over the key index. Sorted by id first (or not at all: ties, so every order, end with the id), the ids are
    /// put in that order and read a chunk at a time until skip + limit match: the answer is what the first ones hold, so
    /// a page near the start reads about as many documents as it answers, not the whole collection. Each chunk is as large
    /// as should hold the matches still missing at the rate found so far (up to the page size), so a filter that matches
    /// all reads no more than it needs and one that matches few does not read one small chunk after another.
    /// Sorted by a field, every document is read and sorted. <paramref name="afterId"/> (only sorted by id ascending)
    /// leaves out every id up to it before anything is read.
    /// </summary>
    private async Task<IReadOnlyList<StoredDocument>> QueryWithIndexAsync(string collection, DocumentQuery query, int skip, int limit, string? afterId, CancellationToken ct)
    {
        var (index, _) = await ReadIndexAsync(collection, ct);
        // No more ids than are skipped: nothing can come after them, whatever the documents say.
        if (index is null || index.Ids.Count <= skip) return [];
        var matches = new List<StateDocument>();
        var budget = query.BudgetFor(ct);
        var pageSize = Math.Max(1, Options.QueryPageSize);
        if (query.Sort.Count > 0 && !query.Sort[0].IsDocumentId)
        {
            foreach (var chunk in index.Ids.Chunk(pageSize)) await ReadMatchesAsync(collection, chunk, query.Filter, budget, matches, ct);
            return Order(matches, query.Sort).Skip(skip).Take(limit).Select(ToStored).ToList();
        }
        var descending = query.Sort.Count > 0 && query.Sort[0].Direction == SortDirection.Desc;
        var candidates = afterId is null ? index.Ids : index.Ids.Where(id => DocumentOrder.CompareIds(id, afterId) > 0);
        using var ordered = InIdOrder(candidates, descending).GetEnumerator();
        var wanted = (long)skip + limit;
        var read = 0;
        var more = true;
        while (more && matches.Count < wanted)
        {
            // As many as should hold the matches still missing, at the rate found so far (double when none matched yet).
            var missing = wanted - matches.Count;
            var size = (int)Math.Clamp(matches.Count == 0 ? Math.Max(missing, read) : Math.Max(missing, missing * read / matches.Count), 1, pageSize);
            var chunk = new List<string>(size);
            while (chunk.Count < size && (more = ordered.MoveNext())) chunk.Add(ordered.Current);
            if (chunk.Count == 0) break;
            read += chunk.Count;
            // Every match in a later chunk sorts after every one in this chunk: once skip + limit are found, the page is known.
            await ReadMatchesAsync(collection, chunk, query.Filter, budget, matches, ct);
        }
        return Order(matches, query.Sort).Skip(skip).Take(limit).Select(ToStored).ToList();
    }

    /// <summary>Ids in code-point order, lazily: a heap built in linear time, so a page that needs the first few does not sort them all.</summary>
    private static IEnumerable<string> InIdOrder(IEnumerable<string> ids, bool descending)
    {
        var order = descending ? Comparer<string>.Create((a, b) => DocumentOrder.CompareIds(b, a)) : Comparer<string>.Create(DocumentOrder.CompareIds);
        var heap = new PriorityQueue<string, string>(ids.Select(id => (id, id)), order);
        while (heap.TryDequeue(out var id, out _)) yield return id;
    }

    /// <summary>Reads the documents of <paramref name="ids"/> in one bulk read and adds those matching <paramref name="filter"/>.</summary>
    private async Task ReadMatchesAsync(string collection, IReadOnlyList<string> ids, FilterNode filter, FilterBudget budget, List<StateDocument> matches, CancellationToken ct)
    {
        IReadOnlyList<BulkStateItem> items;
        try
        {
            items = await dapr.GetBulkStateAsync(Store, ids.Select(id => StateKeys.Document(collection, id)).ToList(), parallelism: 8, cancellationToken: ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
        foreach (var item in items)
        {
            // A missing value is an id whose document was deleted after the index was read (or a crash between the two).
            if (string.IsNullOrEmpty(item.Value)) continue;
            var entry = JsonSerializer.Deserialize<StateDocument>(item.Value);
            if (entry is not null && entry.Collection == collection && budget.Matches(filter, entry.Doc)) matches.Add(entry);
        }
    }

    /// <summary>Sorts like the embedded store: each key in turn, Core's total order, versions as versions; ties by id.</summary>
    private static IEnumerable<StateDocument> Order(List<StateDocument> docs, IReadOnlyList<SortKey> sort)
    {
        var comparison = Comparer<StateDocument>.Create((a, b) =>
        {
            foreach (var key in sort)
            {
                var c = key.IsDocumentId ? DocumentOrder.CompareIds(a.Id, b.Id)
                    : JsonValues.SortCompare(First(a.Doc, key.Path), First(b.Doc, key.Path), VersionComparer.IsVersionField(key.Path));
                if (c != 0) return key.Direction == SortDirection.Desc ? -c : c;
            }
            // Code-point order, as the embedded store's index orders ids (UTF-16 ordinal puts U+1F600 before U+E000).
            return DocumentOrder.CompareIds(a.Id, b.Id);
        });
        return docs.Order(comparison);
    }

    private static JsonNode? First(JsonObject doc, string path) => JsonPath.Resolve(doc, path).FirstOrDefault();

    private async Task<(StateDocument? Entry, string? ETag)> ReadAsync(string collection, string id, CancellationToken ct)
    {
        try
        {
            var (entry, etag) = await dapr.GetStateAndETagAsync<StateDocument>(Store, StateKeys.Document(collection, id), ConsistencyMode.Strong, cancellationToken: ct);
            return (entry, etag);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
    }

    private async Task<bool> TryWriteAsync<T>(string key, T value, string? etag, CancellationToken ct)
    {
        try
        {
            return await TrySaveAsync(key, value, etag ?? "", ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            // Some stores report a lost race as a plain error rather than an ETag mismatch: when the
            // entry's ETag moved, it was a race (the caller re-reads); otherwise the store really failed.
            if (!SidecarFailures.IsUnavailable(e) && await CurrentETagAsync(key, ct) != (etag ?? "")) return false;
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
    }

    private async Task<string> CurrentETagAsync(string key, CancellationToken ct)
    {
        try
        {
            var (_, etag) = await dapr.GetStateAndETagAsync<JsonNode>(Store, key, ConsistencyMode.Strong, cancellationToken: ct);
            return etag ?? "";
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
    }

    private async Task<(KeyIndex? Index, string? ETag)> ReadIndexAsync(string collection, CancellationToken ct)
    {
        try
        {
            return await dapr.GetStateAndETagAsync<KeyIndex>(Store, StateKeys.Index(collection), ConsistencyMode.Strong, cancellationToken: ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"document store '{Store}'");
        }
    }

    /// <summary>Adds an id to its collection's index; ETag-guarded read-modify-write, retried when another writer won.</summary>
    private Task AddToIndexAsync(string collection, string id, CancellationToken ct) =>
        UpdateIndexAsync(collection, ids => { if (ids.Contains(id)) return false; ids.Add(id); return true; }, ct);

    private Task RemoveFromIndexAsync(string collection, string id, CancellationToken ct) =>
        UpdateIndexAsync(collection, ids => ids.Remove(id), ct);

    private Task RemoveFromIndexAsync(string collection, IReadOnlyCollection<string> gone, CancellationToken ct)
    {
        var removed = gone.ToHashSet(StringComparer.Ordinal);
        return UpdateIndexAsync(collection, ids => ids.RemoveAll(removed.Contains) > 0, ct);
    }

    private async Task UpdateIndexAsync(string collection, Func<List<string>, bool> change, CancellationToken ct)
    {
        for (var attempt = 0; attempt < IndexAttempts; attempt++)
        {
            var (index, etag) = await ReadIndexAsync(collection, ct);
            var ids = index?.Ids.ToList() ?? [];
            if (!change(ids)) return;
            if (await TryWriteAsync(StateKeys.Index(collection), new KeyIndex(ids), index is null ? "" : etag, ct)) return;
        }
        throw Problems.BackendUnavailable($"the '{collection}' key index in '{Store}' kept changing under concurrent writers; retry");
    }

    // Checked here, before anything is written: every stored document keeps within DocumentDepth.MaxStored.
    private static StateDocument NewEntry(string collection, string id, JsonObject body)
    {
        DocumentDepth.Ensure(body, DocumentDepth.MaxStored);
        return Entry(collection, id, (JsonObject)body.DeepClone());
    }

    // A new entry owning doc, with a fresh revision token.
    private static StateDocument Entry(string collection, string id, JsonObject doc) => new(collection, id, Guid.NewGuid().ToString("N"), doc);

    private static StoredDocument ToStored(StateDocument entry) => new(entry.Id, (JsonObject)entry.Doc.DeepClone(), entry.Revision);

}
