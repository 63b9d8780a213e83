using System.Text.Json;

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
    /// already exists (then nothing is stored). Each body is written straight to the store's JSON by
    /// <paramref name="write"/> (no document object per item: this is the decision log's hot path); it must
    /// write one JSON object.
    /// </summary>
    Task CreateManyAsync<T>(string collection, IReadOnlyList<T> items, Func<T, string> id, Action<Utf8JsonWriter, T> write, CancellationToken ct = default);
}
