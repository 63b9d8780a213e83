using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Templates;

/// <summary>
/// Queries over collections whose documents hold write-only (secret) fields run on what a reader is shown. A
/// filter or sort that reaches into a part of the document where secrets may live (or names a parent of it) is
/// evaluated here, on the documents as answered (secrets masked), instead of by the store on the stored values:
/// otherwise a masked value could still be read back one guess at a time (<c>{"policy_parameters.token":
/// {"$regex": "^a"}}</c>, or <c>$ne</c>), or sorted by. Such queries read the whole collection; others go to the
/// store as they are.
/// </summary>
public static class RedactedQuery
{
    /// <summary>
    /// Runs <paramref name="query"/> on <paramref name="collection"/>; answers each match as <paramref name="present"/>
    /// makes it (masking secrets). <paramref name="secretRoots"/>: the dotted paths under which secrets may live.
    /// </summary>
    public static async Task<IReadOnlyList<JsonObject>> RunAsync(IDocumentStore store, string collection, DocumentQuery query,
        IReadOnlyList<string> secretRoots, Func<StoredDocument, CancellationToken, ValueTask<JsonObject>> present, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(present);
        if (!Reaches(query, secretRoots))
        {
            var found = await store.QueryAsync(collection, query, ct);
            var answer = new List<JsonObject>(found.Count);
            foreach (var doc in found) answer.Add(await present(doc, ct));
            return answer;
        }
        var matches = new List<StoredDocument>();
        var budget = query.BudgetFor(ct);
        await foreach (var doc in store.QueryEveryAsync(collection, ct))
        {
            var shown = await present(doc, ct);
            if (budget.Matches(query.Filter, shown)) matches.Add(doc with { Body = shown });
        }
        matches.Sort(new DocumentOrder(query.Sort));
        return [.. matches.Skip(query.Skip).Take(query.Limit).Select(d => d.Body)];
    }

    /// <summary>True when a filter path or sort key is, is inside, or contains one of <paramref name="secretRoots"/>.</summary>
    public static bool Reaches(DocumentQuery query, IReadOnlyList<string> secretRoots)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(secretRoots);
        return query.Sort.Any(k => !k.IsDocumentId && Reaches(k.Path, secretRoots)) || Reaches(query.Filter, secretRoots);
    }

    private static bool Reaches(FilterNode node, IReadOnlyList<string> roots) => node switch
    {
        AndFilter and => and.Children.Any(c => Reaches(c, roots)),
        OrFilter or => or.Children.Any(c => Reaches(c, roots)),
        // $elemMatch's and $not's nested filters apply below this same path.
        FieldFilter field => Reaches(field.Path, roots),
        _ => true, // an unknown kind of node: assume the worst
    };

    private static bool Reaches(string path, IReadOnlyList<string> roots) =>
        roots.Any(root => path == root
            || path.StartsWith(root + ".", StringComparison.Ordinal)
            || root.StartsWith(path + ".", StringComparison.Ordinal));
}
