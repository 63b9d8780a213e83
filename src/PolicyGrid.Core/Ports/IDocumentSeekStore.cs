using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// Optional companion of <see cref="IDocumentStore"/> for stores that can start a query in id order right after a given
/// id without reading what comes before it, where a page found by position (<see cref="DocumentQuery.Skip"/>) costs them
/// everything before the page: the Dapr store's key index reads each document it counts past. A walk over a whole
/// collection (<see cref="DocumentWalk"/>) then reads each document about once instead of once per page before it.
/// </summary>
public interface IDocumentSeekStore
{
    /// <summary>
    /// The first <paramref name="limit"/> (at most <see cref="DocumentQuery.MaxLimit"/>) documents of
    /// <paramref name="collection"/> matching <paramref name="filter"/> whose id comes after <paramref name="afterId"/>
    /// (all when null), in id order (code-point order, <see cref="DocumentOrder.CompareIds"/>): what
    /// <see cref="IDocumentStore.QueryAsync"/> answers for that filter sorted by <see cref="SortKey.ById"/> ascending,
    /// without the documents up to <paramref name="afterId"/>. The filter is evaluated within the time budget of a
    /// <see cref="DocumentQuery"/> that sets none.
    /// </summary>
    Task<IReadOnlyList<StoredDocument>> QueryAfterAsync(string collection, FilterNode filter, string? afterId, int limit, CancellationToken ct = default);
}
