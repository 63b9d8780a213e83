namespace PolicyGrid.Dapr;

/// <summary>How documents are queried: through the state query API, or a key index kept beside them.</summary>
public enum DocumentQueryMode
{
    /// <summary>
    /// The state store has the query API for any document field: state.mongodb. Not state.redis, even with Redis Stack: it
    /// queries only with a queryIndexName request metadata, over JSON paths declared in queryIndexes, by one sort key.
    /// </summary>
    QueryApi,

    /// <summary>
    /// Any transactional state store: the adapter keeps one index entry per collection listing its ids,
    /// reads documents in bulk and filters with Core's engine. The default, and the mode for state.redis
    /// (the Redis that <c>dapr init</c> starts has no RediSearch module at all).
    /// </summary>
    KeyIndex,
}

/// <summary>Settings under <c>PolicyGrid:Dapr</c>; component names come from <see cref="DaprNames"/>.</summary>
public sealed class DaprOptions
{
    public const string Section = "PolicyGrid:Dapr";

    public DocumentQueryMode DocumentQueries { get; set; } = DocumentQueryMode.KeyIndex;

    /// <summary>Documents read per query page or bulk read.</summary>
    public int QueryPageSize { get; set; } = 500;

    /// <summary>Register the built-in executor <c>dapr</c> (dapr://policy-executor) at start (the registry does).</summary>
    public bool RegisterDaprExecutor { get; set; }

    /// <summary>
    /// The address the app listens on: an IP address (v4 or v6) or <c>localhost</c>. Loopback by default, because
    /// the sidecar reaches its app there, in self-hosted mode and inside a pod. Anything else needs credentials
    /// (see <see cref="DaprAppPort"/>) or <see cref="Insecure"/>.
    /// </summary>
    public string BindAddress { get; set; } = DefaultBindAddress;

    public const string DefaultBindAddress = "127.0.0.1";

    /// <summary>Listen on a non-loopback <see cref="BindAddress"/> without credentials, on purpose.</summary>
    public bool Insecure { get; set; }
}
