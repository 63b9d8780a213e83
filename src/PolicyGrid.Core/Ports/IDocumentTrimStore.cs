namespace PolicyGrid.Core.Ports;

/// <summary>
/// Optional companion of <see cref="IDocumentStore"/> for stores that can delete the oldest documents of a
/// collection in bulk, by id order, without reading them. For append-only collections whose ids sort in
/// creation order (the decision log's time-ordered ids), where retention must keep up with the write rate:
/// a query and a delete per document cannot (measured on SQLite: ~800 deletions/s with 300,000 entries).
/// Retention falls back to query and delete when the store does not offer it.
/// </summary>
public interface IDocumentTrimStore
{
    /// <summary>
    /// Deletes every document whose id sorts (ordinal) before <paramref name="idsBelow"/> when it is given, then
    /// all but the <paramref name="keepNewest"/> highest ids when that is given, in transactions of bounded size
    /// so other writers are held up only briefly; answers how many documents went.
    /// </summary>
    Task<int> TrimByIdAsync(string collection, string? idsBelow, int? keepNewest, CancellationToken ct = default);
}
