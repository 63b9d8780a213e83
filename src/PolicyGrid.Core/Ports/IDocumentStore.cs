using System.Text.Json.Nodes;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Ports;

/// <summary>A stored document: its id within a collection, its JSON body, and an opaque revision (the ETag).</summary>
public sealed record StoredDocument(string Id, JsonObject Body, string Revision);

public enum SortDirection { Asc, Desc }

public sealed record SortKey(string Path, SortDirection Direction)
{
    /// <summary>
    /// The path that orders by the document's own id (its key in the store) rather than a field: every store keeps ids
    /// indexed, so a query in id order with a limit stops after the page instead of sorting every match. Callers'
    /// sort fields never start with <c>$</c>, so it names no field.
    /// </summary>
    public const string DocumentId = "$id";

    public static SortKey ById(SortDirection direction) => new(DocumentId, direction);

    public bool IsDocumentId => Path == DocumentId;
}

/// <summary>A query over one collection: filter, then sort, then skip/limit.</summary>
public sealed record DocumentQuery(FilterNode Filter, IReadOnlyList<SortKey> Sort, int Skip = 0, int Limit = DocumentQuery.DefaultLimit)
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1000;

    /// <summary>
    /// How long evaluating the filter may take over the whole query (every document, every condition); past it the
    /// query is a 400. Stores evaluate through <see cref="BudgetFor"/>.
    /// </summary>
    public TimeSpan TimeBudget { get; init; } = FilterBudget.DefaultLimit;

    /// <summary>A fresh budget for one run of this query, stopping also when <paramref name="ct"/> is cancelled.</summary>
    public FilterBudget BudgetFor(CancellationToken ct) => new(TimeBudget, ct);

    public static DocumentQuery All(int limit = MaxLimit) => new(new AndFilter([]), [], 0, limit);
}

/// <summary>
/// Document persistence. Embedded: SQLite; Dapr: a state store. Every write is durable once the
/// task completes. Conflicts (duplicate id, revision mismatch) throw a 409 <see cref="Errors.PolicyGridException"/>.
/// </summary>
public interface IDocumentStore
{
    Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default);

    /// <summary>Inserts a new document; 409 when the id exists.</summary>
    Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default);

    /// <summary>Replaces an existing document; 404 when missing, 409 when <paramref name="expectedRevision"/> is given and differs.</summary>
    Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default);

    /// <summary>Creates or replaces without a revision check (used for state that has one writer, e.g. job progress).</summary>
    Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default);

    /// <summary>Deletes and returns the deleted document, or null when there was none; 409 on revision mismatch.</summary>
    Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default);

    Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default);
}

/// <summary>Collection names shared by every adapter.</summary>
public static class Collections
{
    public const string Policies = "policies";
    public const string Executors = "executors";
    public const string Functions = "functions";
    public const string Graphs = "graphs";
    public const string Jobs = "jobs";
    public const string Decisions = "decisions";
    public const string GraphExecutions = "graph_executions";
}
