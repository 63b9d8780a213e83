using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Documents;

/// <summary>
/// A PUT as read → change → replace at the revision that was read. When the caller sent no If-Match, another writer
/// landing between our read and our replace is not the caller's conflict: the document is read again and the change
/// applied again, so concurrent <c>$set</c>/<c>$inc</c> updates all succeed and all count. With an If-Match the caller
/// asked for one revision, so a document that moved on answers 409 at once.
/// </summary>
public static class OptimisticUpdate
{
    /// <summary>How many times one update is tried before it gives up with a 409 that says the document was contended.</summary>
    public const int MaxAttempts = 10;

    private static readonly Runtime.Execution.KeyedLocks Writers = new();

    /// <summary>
    /// Runs <paramref name="change"/> on the current document and stores what it answers. The change runs again on every
    /// retry, against the newer document: every check that depends on the stored document belongs inside it.
    /// </summary>
    /// <param name="missing">The endpoint's 404 when the document does not exist (or was deleted meanwhile).</param>
    /// <param name="mismatch">The endpoint's 409 for an If-Match (first) that does not match the current revision (second).</param>
    public static async Task<StoredDocument> ApplyAsync(
        IDocumentStore store, string collection, string id, IfMatchCondition? ifMatch,
        Func<StoredDocument, CancellationToken, Task<JsonObject>> change,
        Func<PolicyGridException> missing,
        Func<IfMatchCondition, string, PolicyGridException> mismatch,
        CancellationToken ct)
    {
        // Writers in this process take turns per document, so they never race each other (30 parallel $inc calls
        // are 30 writes, not hundreds of lost rounds, which under load could run out of attempts); the revision check
        // and the retries below are for writers in other processes sharing the store.
        using var turn = await Writers.AcquireAsync(collection + "\n" + id, ct);
        for (var attempt = 1; ; attempt++)
        {
            var current = await store.GetAsync(collection, id, ct) ?? throw missing();
            if (ifMatch is not null && !ifMatch.Matches(current.Revision)) throw mismatch(ifMatch, current.Revision);
            var next = await change(current, ct);
            try
            {
                return await store.ReplaceAsync(collection, id, next, current.Revision, ct);
            }
            catch (PolicyGridException e) when (e.Status == 404)
            {
                throw missing();
            }
            catch (PolicyGridException e) when (e.Status == 409 && attempt < MaxAttempts)
            {
                // Lost a race to another writer. With an If-Match the next read answers the caller's mismatch;
                // without one, wait a little (jittered, so the losers do not collide again in step) and apply it again.
                if (ifMatch is null) await Task.Delay(Backoff(attempt), ct);
            }
            catch (PolicyGridException e) when (e.Status == 409 && ifMatch is null)
            {
                throw Problems.Conflict($"'{id}' is being changed by many writers at once: this update lost the race {MaxAttempts} times " +
                    "in a row and was not applied; send it again");
            }
        }
    }

    /// <inheritdoc cref="ApplyAsync(IDocumentStore, string, string, IfMatchCondition?, Func{StoredDocument, CancellationToken, Task{JsonObject}}, Func{PolicyGridException}, Func{IfMatchCondition, string, PolicyGridException}, CancellationToken)"/>
    public static Task<StoredDocument> ApplyAsync(
        IDocumentStore store, string collection, string id, IfMatchCondition? ifMatch,
        Func<StoredDocument, JsonObject> change,
        Func<PolicyGridException> missing,
        Func<IfMatchCondition, string, PolicyGridException> mismatch,
        CancellationToken ct) =>
        ApplyAsync(store, collection, id, ifMatch, (current, _) => Task.FromResult(change(current)), missing, mismatch, ct);

    // Full jitter over a window that doubles from 4 ms up to 64 ms: at most about a third of a second over all attempts.
    private static TimeSpan Backoff(int attempt) =>
        TimeSpan.FromMilliseconds(1 + Random.Shared.Next(Math.Min(64, 2 << attempt)));
}
