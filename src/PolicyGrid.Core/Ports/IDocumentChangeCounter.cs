namespace PolicyGrid.Core.Ports;

/// <summary>
/// Optional companion of <see cref="IDocumentStore"/> for a store that sees every write to a collection
/// (the embedded store: the server is the only writer of its policies). Hot paths that keep a parsed
/// copy (the policy catalog) check it instead of asking the store on every call: an unchanged count
/// means nothing was written since. Stores shared by several writers (Dapr state stores behind
/// several replicas) do not offer it, and their readers ask the store.
/// </summary>
public interface IDocumentChangeCounter
{
    /// <summary>
    /// A number that changes after every write through this store to <paramref name="collection"/> has
    /// committed. Read it before reading the store, so a write that races the read leaves the copy stale, not falsely current.
    /// </summary>
    long ChangesTo(string collection);
}
