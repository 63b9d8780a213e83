using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Documents;

/// <summary>
/// What every stored document kind offers, so create/read/update code can be written once:
/// its collection, its id, the fields an update may not change, and validated construction.
/// </summary>
public interface IDocument<TSelf> where TSelf : IDocument<TSelf>
{
    /// <summary>The <see cref="Ports.Collections"/> name it is stored in.</summary>
    static abstract string Collection { get; }

    /// <summary>Top-level fields an update may not change.</summary>
    static abstract IReadOnlySet<string> IdentityFields { get; }

    /// <summary>Validates and completes a body; a 400 naming every bad field otherwise.</summary>
    static abstract TSelf FromJson(JsonObject body);

    /// <summary>The document's key within its collection (URI or id).</summary>
    string Id { get; }

    /// <summary>The full document: every field present.</summary>
    JsonObject ToJson();
}
