using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr.Tests.Adapters;

/// <summary>
/// A store seen only as an <see cref="IDocumentStore"/>, its optional companions hidden: retention then takes the paths it
/// takes on stores without them (paging, one delete per document), to compare against.
/// </summary>
internal class PlainDocumentStore(IDocumentStore inner) : IDocumentStore
{
    public Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) => inner.GetAsync(collection, id, ct);
    public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.CreateAsync(collection, id, body, ct);
    public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) =>
        inner.ReplaceAsync(collection, id, body, expectedRevision, ct);
    public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.UpsertAsync(collection, id, body, ct);
    public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => inner.DeleteAsync(collection, id, expectedRevision, ct);
    public virtual Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => inner.QueryAsync(collection, query, ct);
}
