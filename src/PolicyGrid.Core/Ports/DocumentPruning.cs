using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// Retention through any <see cref="IDocumentStore"/>: a page of matching documents at a time, deleted by id (all
/// together when the store offers <see cref="IDocumentBulkDeleteStore"/>, else one by one). For low-volume collections,
/// and the fallback of stores without <see cref="IDocumentTrimStore"/>.
/// </summary>
public static class DocumentPruning
{
    /// <summary>Deletes every document of <paramref name="collection"/> matching <paramref name="filter"/>; answers how many went.</summary>
    public static async Task<int> DeleteMatchingAsync(IDocumentStore store, string collection, FilterNode filter, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(store);
        var removed = 0;
        while (true)
        {
            var page = await store.QueryAsync(collection, new DocumentQuery(filter, [], 0, DocumentQuery.MaxLimit), ct);
            if (page.Count == 0) return removed;
            removed += await DeleteAsync(store, collection, [.. page.Select(d => d.Id)], ct);
        }
    }

    /// <summary>
    /// Deletes the documents matching <paramref name="filter"/> that come after the first <paramref name="keep"/> in
    /// <paramref name="order"/> (newest first, to keep the newest); answers how many went. A store that offers
    /// <see cref="IDocumentRankStore"/> (Dapr's) is asked for them in one pass: page after page at skip
    /// <paramref name="keep"/>, it read the kept documents again for every page, and once more to find none left.
    /// </summary>
    public static async Task<int> DeleteBeyondAsync(IDocumentStore store, string collection, FilterNode filter, SortKey order, int keep, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentOutOfRangeException.ThrowIfNegative(keep);
        if (store is IDocumentRankStore ranks) return await DeleteAsync(store, collection, await ranks.IdsBeyondAsync(collection, filter, order, keep, ct), ct);
        var removed = 0;
        while (true)
        {
            var page = await store.QueryAsync(collection, new DocumentQuery(filter, [order], keep, DocumentQuery.MaxLimit), ct);
            if (page.Count == 0) return removed;
            removed += await DeleteAsync(store, collection, [.. page.Select(d => d.Id)], ct);
        }
    }

    private static async Task<int> DeleteAsync(IDocumentStore store, string collection, IReadOnlyList<string> ids, CancellationToken ct)
    {
        if (store is IDocumentBulkDeleteStore bulk) return (await bulk.DeleteManyAsync(collection, ids, ct)).Count;
        var removed = 0;
        // One that is gone already (deleted meanwhile) is not counted, and no query returns it again.
        foreach (var id in ids)
            if (await store.DeleteAsync(collection, id, null, ct) is not null) removed++;
        return removed;
    }
}
