using System.Collections.Concurrent;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Ports;

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
    private readonly ConcurrentDictionary<string, (string Revision, PolicyRule Rule, long Changes)> parsed = new(StringComparer.Ordinal);
    private readonly IDocumentChangeCounter? counter = store as IDocumentChangeCounter;

    /// <summary>The policy to run: 400 for a malformed URI, 404 when unknown, 410 when retired.</summary>
    public async Task<PolicyRule> GetRunnableAsync(string policyRuleUri, CancellationToken ct)
    {
        // Taken before the store is read: a write racing the read leaves the entry stale, never falsely current.
        var changes = counter?.ChangesTo(Collections.Policies) ?? -1;
        // Keys are URIs as parsing writes them, so a caller that sent one as written skips parsing it again.
        if (counter is not null && policyRuleUri is not null && parsed.TryGetValue(policyRuleUri, out var asWritten) && asWritten.Changes == changes)
            return Runnable(policyRuleUri, asWritten.Rule);
        var uri = PolicyUri.Parse(Uri.UnescapeDataString(policyRuleUri ?? ""), "policy_rule_uri").ToString();
        if (counter is not null && parsed.TryGetValue(uri, out var unchanged) && unchanged.Changes == changes) return Runnable(uri, unchanged.Rule);
        if (store is IDocumentRevisions revisions && parsed.TryGetValue(uri, out var known))
        {
            var revision = await revisions.GetRevisionAsync(Collections.Policies, uri, ct)
                ?? throw Problems.NotFound($"policy '{uri}' does not exist");
            if (revision == known.Revision)
            {
                parsed[uri] = known with { Changes = changes };
                return Runnable(uri, known.Rule);
            }
        }
        var stored = await store.GetAsync(Collections.Policies, uri, ct)
            ?? throw Problems.NotFound($"policy '{uri}' does not exist");
        var rule = parsed.TryGetValue(uri, out var cached) && cached.Revision == stored.Revision ? cached.Rule : PolicyRule.FromJson(stored.Body);
        parsed[uri] = (stored.Revision, rule, changes);
        return Runnable(uri, rule);
    }

    private static PolicyRule Runnable(string uri, PolicyRule rule)
    {
        if (rule.IsRetired) throw Problems.Retired($"policy '{uri}' is retired");
        // Stored before types were checked at create, or by a registry that does not run policies itself.
        rule.EnsureRunnableKind();
        return rule;
    }
}
