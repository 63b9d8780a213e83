namespace PolicyGrid.Core.Ports;

/// <summary>
/// Optional companion of <see cref="IDocumentStore"/> for stores where deleting one document costs far more than its
/// share of deleting many: the Dapr store in key-index mode rewrites the collection's whole id list for every
/// <see cref="IDocumentStore.DeleteAsync"/>, so a retention sweep deleting N documents one at a time wrote the N-long
/// list N times. Retention (<see cref="DocumentPruning"/>, job retention) hands it each batch of ids it chose; stores
/// without it are asked one id at a time.
/// </summary>
public interface IDocumentBulkDeleteStore
{
    /// <summary>
    /// Deletes the documents of <paramref name="collection"/> with the given <paramref name="ids"/>, whatever their
    /// revision; answers the ids whose documents existed and were deleted by this call, each once, in the order given.
    /// An id with no document (never written, or deleted by another writer meanwhile) is skipped and not answered, as
    /// <see cref="IDocumentStore.DeleteAsync"/> answers null for it. When the store fails part way some of the documents
    /// may be gone already; nothing that still exists stops being found by queries.
    /// </summary>
    Task<IReadOnlyList<string>> DeleteManyAsync(string collection, IReadOnlyList<string> ids, CancellationToken ct = default);
}
