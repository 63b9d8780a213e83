namespace PolicyGrid.Core.Ports;

/// <summary>
/// The keys of one <see cref="IContextStore"/> are shared by every kind of caller: a Type 2 call's context lives under
/// the policy URI or the caller's <c>context_key</c>, and the embedded function host keeps each replica's context and
/// instance state under <c>function:&lt;name&gt;#&lt;replica&gt;</c>. A caller's key in that space would read a function's
/// saved state as its context and write its own over it, so such keys are refused where a call names them.
/// </summary>
public static class ContextKeys
{
    /// <summary>Where the embedded function host keeps a replica's context and instance state (its FunctionReplica.StoreKey).</summary>
    public const string FunctionPrefix = "function:";

    /// <summary>Why a caller may not name <paramref name="key"/>, or null when it may.</summary>
    public static string? ReservedBecause(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return key.StartsWith(FunctionPrefix, StringComparison.Ordinal)
            ? $"'{key}' starts with '{FunctionPrefix}', where Type 4 functions keep their context and instance state " +
              $"({FunctionPrefix}<name>#<replica>); a call may not read or replace them, so choose a key that does not start with '{FunctionPrefix}'"
            : null;
    }
}
