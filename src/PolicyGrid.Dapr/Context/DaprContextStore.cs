using System.Globalization;
using System.Text.Json.Nodes;
using Dapr.Client;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr.Context;

/// <summary>
/// <see cref="IContextStore"/> over the Redis state store <see cref="DaprNames.Components.CacheStore"/>:
/// the TTL cache of policy context. A time to live goes to Redis as the <c>ttlInSeconds</c> request
/// metadata (Redis expires the key itself); without one, the component's own default
/// <c>ttlInSeconds</c> applies, so operators bound the cache in one place.
/// Keys are <c>context/{key}</c>, leaving the store's other key spaces (results) free. daprd refuses every state key
/// holding <c>||</c> (its key-prefix separator; dapr/dapr pkg/components/state/state_config.go, v1.18.3), so a key's
/// <c>|</c> and <c>%</c> are escaped as in <see cref="Documents.StateKeys.Escape"/>: a caller's context_key may hold any.
/// </summary>
public sealed class DaprContextStore(DaprClient dapr) : IContextStore
{
    private const string Store = DaprNames.Components.CacheStore;
    public const string TtlMetadata = "ttlInSeconds";

    public static string Key(string key) => "context/" + Documents.StateKeys.Escape(key);

    public async Task<JsonObject?> GetAsync(string key, CancellationToken ct = default)
    {
        try
        {
            return await dapr.GetStateAsync<JsonObject>(Store, Key(key), cancellationToken: ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"context cache '{Store}'");
        }
    }

    public async Task SetAsync(string key, JsonObject context, TimeSpan? ttl, CancellationToken ct = default)
    {
        var metadata = ttl is { } t
            ? new Dictionary<string, string> { [TtlMetadata] = Seconds(t).ToString(CultureInfo.InvariantCulture) }
            : null;
        try
        {
            await dapr.SaveStateAsync(Store, Key(key), context, metadata: metadata, cancellationToken: ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"context cache '{Store}'");
        }
    }

    public async Task DeleteAsync(string key, CancellationToken ct = default)
    {
        try
        {
            await dapr.DeleteStateAsync(Store, Key(key), cancellationToken: ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"context cache '{Store}'");
        }
    }

    /// <summary>Whole seconds, rounded up: a sub-second TTL must not become 0, which Redis reads as "expire now".</summary>
    public static long Seconds(TimeSpan ttl) => Math.Max(1, (long)Math.Ceiling(ttl.TotalSeconds));
}
