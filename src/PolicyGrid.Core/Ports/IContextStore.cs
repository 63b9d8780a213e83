using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// The persisted <c>context</c> dict of a policy or function, keyed by policy URI or a caller's
/// context_key, with an optional time to live. Embedded: SQLite with expiry; Dapr: Redis with ttlInSeconds.
/// </summary>
public interface IContextStore
{
    Task<JsonObject?> GetAsync(string key, CancellationToken ct = default);
    Task SetAsync(string key, JsonObject context, TimeSpan? ttl, CancellationToken ct = default);
    Task DeleteAsync(string key, CancellationToken ct = default);
}
