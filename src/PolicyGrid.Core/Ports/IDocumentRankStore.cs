using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// Optional companion of <see cref="IDocumentStore"/> for stores where a page found by position costs every document
/// before it (the Dapr store: its key index reads the whole collection to sort it by a field, its query API pages with a
/// token and has no offset). Retention that keeps the first N of a collection in some order and removes the rest asks for
/// the rest in one pass, where page after page at <see cref="DocumentQuery.Skip"/> N read the N kept again for each page.
/// </summary>
public interface IDocumentRankStore
{
    /// <summary>
    /// The ids of the documents of <paramref name="collection"/> matching <paramref name="filter"/> that come after the
    /// first <paramref name="keep"/> in <paramref name="order"/> (ties by id, as <see cref="IDocumentStore.QueryAsync"/>
    /// orders them), in that order: what <see cref="IDocumentStore.QueryAsync"/> answers at skip <paramref name="keep"/>,
    /// then at each page after it, all together.
    /// </summary>
    Task<IReadOnlyList<string>> IdsBeyondAsync(string collection, FilterNode filter, SortKey order, int keep, CancellationToken ct = default);
}
