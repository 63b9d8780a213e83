using System.Collections.Concurrent;
using System.Diagnostics;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Reads policy documents for execution so that updates and retirements apply to the next call. A
/// store that counts its writes (<see cref="IDocumentChangeCounter"/>: the embedded store, sole
/// writer of its policies) is not asked again while no policy was written; any other store is asked
/// on every call (so writes by other processes sharing it count too), and then the parsed document
/// is reused while its revision holds, and when the store can answer the revision alone
/// (<see cref="IDocumentRevisions"/>) the body is not even read.
/// </summary>
public sealed class PolicyCatalog(IDocumentStore store)
{
    private readonly ConcurrentDictionary<string, Checked> parsed = new(StringComparer.Ordinal);
    private readonly IDocumentChangeCounter? counter = store as IDocumentChangeCounter;

    /// <summary>
    /// A stored revision as parsed, and the count of policy writes (<see cref="IDocumentChangeCounter"/>) at which it
    /// was last found current. It is also the <see cref="StartCheck"/> of the calls checked against it: one that waited
    /// in the worker pool starts only if no policy was written since (else it is checked again, <see cref="RecheckAsync"/>).
    /// </summary>
    internal sealed class Checked(string revision, PolicyRule rule, long changes, PolicyCatalog catalog) : StartCheck
    {
        private long changes = changes;

        public string Revision { get; } = revision;
        public PolicyRule Rule { get; } = rule;
        public PolicyCatalog Catalog { get; } = catalog;

        public long Changes
        {
            get => Volatile.Read(ref changes);
            set => Volatile.Write(ref changes, value);
        }

        private long confirmedAt;

        /// <summary>When the store last said this revision is current (Stopwatch ticks): what a store without a counter goes by.</summary>
        public long ConfirmedAt
        {
            get => Volatile.Read(ref confirmedAt);
            set => Volatile.Write(ref confirmedAt, value);
        }

        // Without a counter (a store other processes write too, such as Dapr's) nothing can be known without asking it:
        // a call that waited re-reads it unless the store was asked within RecheckAfter (every call asks it there, so
        // under load that is a few milliseconds ago). Re-reading for every waited batch put a sidecar round trip before
        // each batch of a busy worker.
        public override bool StillHolds => Catalog.StillCurrent(Changes, ConfirmedAt);

        /// <summary>The store has just said this revision is current, at <paramref name="changesNow"/> policy writes.</summary>
        public void Confirm(long changesNow)
        {
            Changes = changesNow;
            ConfirmedAt = Stopwatch.GetTimestamp();
        }

        /// <summary>404 / 410 when the policy was deleted or retired since the call was checked (it did not run); null otherwise.</summary>
        public override Task<Exception?> RecheckAsync() => Catalog.GoneSinceAsync(Rule.PolicyRuleUri, what =>
            $"policy '{Rule.PolicyRuleUri}' was {what} while this call waited for a policy worker (all of the policy's workers were busy); it did not run",
            CancellationToken.None);
    }

    /// <summary>
    /// A <see cref="StartCheck"/> for the calls of something that runs <paramref name="policyRuleUri"/> (one per
    /// function, made once): a call that waited in the worker pool is refused with 410 <paramref name="problem"/> when the
    /// policy was retired meanwhile. A policy this store does not hold (deleted, or a snapshot another registry sent) lets it start.
    /// One whose status cannot be read (the store unreachable) does not: it is refused with the store's error, as the
    /// call's own turn check refuses it (a policy whose status cannot be read is not run).
    /// </summary>
    public StartCheck RetiredCheck(string policyRuleUri, Func<string> problem) => new UnlessRetired(this, policyRuleUri, problem);

    private sealed class UnlessRetired(PolicyCatalog catalog, string uri, Func<string> problem) : StartCheck
    {
        // The count of policy writes at which the policy was last found not retired (none yet: never equal to a count).
        private long confirmed = long.MinValue;

        // When it was last confirmed (Stopwatch ticks), for a store without a counter (see Checked.StillHolds).
        private long confirmedAt = long.MinValue / 2;

        public override bool StillHolds => catalog.StillCurrent(Volatile.Read(ref confirmed), Volatile.Read(ref confirmedAt));

        public override async Task<Exception?> RecheckAsync()
        {
            var changes = catalog.counter?.ChangesTo(Collections.Policies) ?? long.MinValue;
            try
            {
                await catalog.GetRunnableAsync(uri, CancellationToken.None);
            }
            catch (PolicyGridException e)
            {
                // Retired, or its status unreadable (the store failing): the call does not start. Deleted since it was
                // deployed (404): the deployment's snapshot runs on.
                if (e.Status != 404) return e.Status == 410 ? Problems.Retired(problem()) : e;
            }
            Volatile.Write(ref confirmed, changes);
            Volatile.Write(ref confirmedAt, Stopwatch.GetTimestamp());
            return null;
        }
    }

    // Whether what the store confirmed at `changes` policy writes (a store with a counter), or at `confirmedAt` (Stopwatch
    // ticks, one without), still holds without asking it again.
    private bool StillCurrent(long changes, long confirmedAt) => counter is { } c
        ? c.ChangesTo(Collections.Policies) == changes
        : Stopwatch.GetTimestamp() - confirmedAt < recheckAfterTicks;

    /// <summary>
    /// For a call checked against <paramref name="policyRuleUri"/> that then waited: null while the policy can still run;
    /// once it was deleted or retired, the 404 / 410 to answer, worded by <paramref name="problem"/> from "deleted" or "retired".
    /// </summary>
    internal async Task<Exception?> GoneSinceAsync(string policyRuleUri, Func<string, string> problem, CancellationToken ct)
    {
        try
        {
            await GetRunnableAsync(policyRuleUri, ct);
            return null;
        }
        catch (PolicyGridException e) when (e.Status is 404 or 410)
        {
            var text = problem(e.Status == 410 ? "retired" : "deleted");
            return e.Status == 410 ? Problems.Retired(text) : Problems.NotFound(text);
        }
    }

    /// <summary>The policy to run: 400 for a malformed URI, 404 when unknown, 410 when retired.</summary>
    public async Task<PolicyRule> GetRunnableAsync(string policyRuleUri, CancellationToken ct) => (await GetCheckedAsync(policyRuleUri, ct)).Rule;

    /// <summary>As <see cref="GetRunnableAsync"/>, with the <see cref="StartCheck"/> for the pool of a call checked against it.</summary>
    internal async Task<Checked> GetCheckedAsync(string policyRuleUri, CancellationToken ct)
    {
        // Taken before the store is read: a write racing the read leaves the entry stale, never falsely current.
        var changes = counter?.ChangesTo(Collections.Policies) ?? -1;
        // Keys are URIs as parsing writes them, so a caller that sent one as written skips parsing it again.
        if (counter is not null && policyRuleUri is not null && parsed.TryGetValue(policyRuleUri, out var asWritten) && asWritten.Changes == changes)
            return Runnable(policyRuleUri, asWritten);
        var uri = PolicyUri.Parse(Uri.UnescapeDataString(policyRuleUri ?? ""), "policy_rule_uri").ToString();
        if (counter is not null && parsed.TryGetValue(uri, out var unchanged) && unchanged.Changes == changes) return Runnable(uri, unchanged);
        if (store is IDocumentRevisions revisions && parsed.TryGetValue(uri, out var known))
        {
            var revision = await revisions.GetRevisionAsync(Collections.Policies, uri, ct) ?? throw Deleted(uri);
            if (revision == known.Revision)
            {
                known.Confirm(changes);
                return Runnable(uri, known);
            }
        }
        var stored = await store.GetAsync(Collections.Policies, uri, ct) ?? throw Deleted(uri);
        if (parsed.TryGetValue(uri, out var cached) && cached.Revision == stored.Revision)
        {
            cached.Confirm(changes);
            return Runnable(uri, cached);
        }
        var entry = new Checked(stored.Revision, PolicyRule.FromJson(stored.Body), changes, this) { ConfirmedAt = Stopwatch.GetTimestamp() };
        parsed[uri] = entry;
        return Runnable(uri, entry);
    }

    // Deleted (by this process or another sharing the store): what was parsed of it goes too.
    private PolicyGridException Deleted(string uri)
    {
        parsed.TryRemove(uri, out _);
        return Problems.UnknownPolicy(uri);
    }

    /// <summary>
    /// Drops what was parsed of <paramref name="policyRuleUri"/> (a deleted or retired policy): its next call reads the
    /// store again. Kept otherwise, every policy URI ever run stayed parsed in memory, deleted ones too.
    /// </summary>
    public void Forget(string policyRuleUri)
    {
        ArgumentNullException.ThrowIfNull(policyRuleUri);
        parsed.TryRemove(policyRuleUri, out _);
        if (PolicyUri.TryParse(policyRuleUri, out var uri, out _)) parsed.TryRemove(uri.ToString(), out _);
    }

    /// <summary>
    /// Drops what was parsed of every version of <paramref name="policyName"/> but those in <paramref name="runnable"/>
    /// (URIs as parsing writes them): <see cref="Forget"/> for each version that was deleted or retired.
    /// </summary>
    public void ForgetVersionsOf(string policyName, IReadOnlySet<string> runnable)
    {
        ArgumentNullException.ThrowIfNull(runnable);
        foreach (var (key, entry) in parsed)
            if (entry.Rule.Name == policyName && !runnable.Contains(entry.Rule.Uri.ToString())) parsed.TryRemove(key, out _);
    }

    /// <summary>Policies whose parsed document is kept now (for tests and diagnostics).</summary>
    public int ParsedCount => parsed.Count;

    /// <summary>
    /// How recently a store without a write counter must have confirmed a policy for a call that waited in the worker pool
    /// to start without asking it again: a retirement within this long before the call starts may not stop it.
    /// </summary>
    public TimeSpan RecheckAfter
    {
        get => TimeSpan.FromSeconds((double)recheckAfterTicks / Stopwatch.Frequency);
        init => recheckAfterTicks = (long)(value.TotalSeconds * Stopwatch.Frequency);
    }

    private readonly long recheckAfterTicks = Stopwatch.Frequency;

    private static Checked Runnable(string uri, Checked entry)
    {
        if (entry.Rule.IsRetired) throw Problems.Retired($"policy '{uri}' is retired");
        // Stored before types were checked at create, or by a registry that does not run policies itself.
        entry.Rule.EnsureRunnableKind();
        return entry;
    }
}
