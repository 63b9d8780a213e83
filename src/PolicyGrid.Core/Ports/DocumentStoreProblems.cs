using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// The words every <see cref="IDocumentStore"/> answers a write with when the document is not as the caller expected.
/// They reach users when a write races another (an update of a policy deleted meanwhile), so SQLite and Dapr say the
/// same thing: SQLite said <c>'p' not found in policies</c> where Dapr said <c>policy 'p' does not exist</c>.
/// </summary>
public static class DocumentStoreProblems
{
    /// <summary>404 for a replace of a document that is not there (deleted since the caller read it, or never written).</summary>
    public static PolicyGridException Missing(string collection, string id) =>
        Problems.NotFound($"{Singular(collection)} '{id}' does not exist (deleted meanwhile, or never stored)");

    /// <summary>409 for a create of an id that is taken.</summary>
    public static PolicyGridException Duplicate(string collection, string id) =>
        Problems.Conflict($"{Singular(collection)} '{id}' already exists");

    /// <summary>409 for a write or delete whose If-Match names a revision other than the stored one.</summary>
    public static PolicyGridException ChangedSince(string collection, string id, string expected, string current) =>
        Problems.Conflict($"{Singular(collection)} '{id}' has changed since revision '{expected}' (If-Match; it is at '{current}' now); read it again and retry");

    /// <summary>policies → policy, graph_executions → graph execution (errors once said "policie 'x' already exists").</summary>
    public static string Singular(string collection)
    {
        ArgumentNullException.ThrowIfNull(collection);
        return (collection.EndsWith("ies", StringComparison.Ordinal) ? collection[..^3] + "y"
            : collection.EndsWith('s') ? collection[..^1] : collection).Replace('_', ' ');
    }
}
