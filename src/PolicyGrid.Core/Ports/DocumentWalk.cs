using System.Runtime.CompilerServices;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// Reading a whole collection (or every match of a filter) through <see cref="IDocumentStore.QueryAsync"/>, which answers
/// at most <see cref="DocumentQuery.MaxLimit"/> documents a query: page after page in id order, one page in memory at a
/// time. For internal reads that must see every document (restoring functions at start, following open jobs, placing
/// work); not for collections that grow without bound (decisions), whose callers should page themselves.
/// </summary>
public static class DocumentWalk
{
    /// <summary>How far back of where the last page ended the next one starts, to find its last document again.</summary>
    internal const int Overlap = 32;

    /// <summary>Every document of <paramref name="collection"/>, in id order.</summary>
    public static IAsyncEnumerable<StoredDocument> QueryEveryAsync(this IDocumentStore store, string collection, CancellationToken ct = default) =>
        store.QueryEveryAsync(collection, new AndFilter([]), ct);

    /// <summary>
    /// Every document of <paramref name="collection"/> matching <paramref name="filter"/>, in id order (code-point order,
    /// <see cref="DocumentOrder.CompareIds"/>). A document that matches from the start of the walk to its end is answered
    /// exactly once, even when others are deleted, created or stop matching meanwhile (a job finishing while open jobs are
    /// read): one created or starting to match meanwhile may or may not be answered.
    /// </summary>
    /// <remarks>
    /// A store that can start after an id (<see cref="IDocumentSeekStore"/>) is asked for what follows the last id
    /// answered, page after page: exact whatever changes behind the walk, and no page costs the store what comes before
    /// it. Other stores are paged by position, as follows.
    /// <para>
    /// Pages are found by position (skip), so a document before the walk's position that goes away moves every later one
    /// back: skipping on by whole pages would then pass over one. Instead each page starts a little before where the
    /// previous one ended and must hold a document at or before the last one answered; the page then continues the walk
    /// exactly (what follows the last id answered, in id order). A page that starts past it (documents before it went)
    /// is read again from further back, until from the start.
    /// </para>
    /// </remarks>
    public static async IAsyncEnumerable<StoredDocument> QueryEveryAsync(this IDocumentStore store, string collection, FilterNode filter,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(filter);
        const int pageSize = DocumentQuery.MaxLimit;
        if (store is IDocumentSeekStore seek)
        {
            string? after = null;
            while (true)
            {
                var page = await seek.QueryAfterAsync(collection, filter, after, pageSize, ct);
                foreach (var doc in page) yield return doc;
                if (page.Count < pageSize) yield break;
                after = page[^1].Id;
            }
        }
        string? last = null; // the id of the last document answered
        var next = 0;        // the position after it when it was read
        var back = Overlap;
        while (true)
        {
            var skip = last is null ? 0 : Math.Max(0, next - back);
            var page = await store.QueryAsync(collection, new DocumentQuery(filter, [SortKey.ById(SortDirection.Asc)], skip, pageSize), ct);
            // The page is in id order: those already answered (at or before `last`) come first.
            var seen = 0;
            if (last is not null)
                while (seen < page.Count && DocumentOrder.CompareIds(page[seen].Id, last) <= 0) seen++;
            if (last is not null && seen == 0 && skip > 0)
            {
                // Nothing at or before `last` here: documents before it went, and some after it may be before this page.
                back *= 2;
                continue;
            }
            for (var i = seen; i < page.Count; i++) yield return page[i];
            if (page.Count < pageSize) yield break;
            if (seen < page.Count) last = page[^1].Id;
            next = skip + page.Count;
            back = Overlap;
        }
    }
}
