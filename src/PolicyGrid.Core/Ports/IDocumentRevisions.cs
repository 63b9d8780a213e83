namespace PolicyGrid.Core.Ports;

/// <summary>
/// Optional companion of <see cref="IDocumentStore"/> for stores that can tell a document's current
/// revision without reading its body. Hot paths that keep a parsed copy (e.g. the policy catalog) use
/// it to check their copy is still current on every call at a fraction of a full read.
/// </summary>
public interface IDocumentRevisions
{
    /// <summary>The revision (ETag) the document has now, or null when it does not exist.</summary>
    Task<string?> GetRevisionAsync(string collection, string id, CancellationToken ct = default);
}
