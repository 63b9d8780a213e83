namespace PolicyGrid.Core.Errors;

/// <summary>
/// What an adapter's own infrastructure failures mean in the contract's terms. An adapter whose storage throws
/// exceptions of its own (a full disk, a read-only file system, a locked database) registers one, and the API answers
/// with the error it returns (a 503 <c>backend_unavailable</c> naming the cause) instead of a 500 <c>internal_error</c>.
/// </summary>
public interface IFailureTranslator
{
    /// <summary>The contract's error for <paramref name="failure"/> (or an exception it wraps), or null when it is not one this adapter knows.</summary>
    PolicyGridException? Translate(Exception failure);
}
