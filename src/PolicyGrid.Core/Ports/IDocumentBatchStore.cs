using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// Optional companion of <see cref="IDocumentStore"/> for stores that can insert many new documents
/// in one durable write (one transaction, one sync to disk). High-volume append-only writers such as
/// the decision log use it when the store offers it, and fall back to one create at a time otherwise.
/// </summary>
public interface IDocumentBatchStore
{
    /// <summary>
    /// Inserts every document or none of them; durable once the task completes. 409 when any id
    /// already exists (then nothing is stored).
    /// </summary>
    Task CreateManyAsync(string collection, IReadOnlyList<KeyValuePair<string, JsonObject>> documents, CancellationToken ct = default);
}
