using System.Collections.Concurrent;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Reads policy documents for execution. The store is asked on every call, so updates and
/// retirements (also by other processes sharing the store) apply to the next call; the parsed
/// document is reused while its revision holds, and when the store can answer the revision alone
/// (<see cref="IDocumentRevisions"/>) the body is not even read then.
/// </summary>
public sealed class PolicyCatalog(IDocumentStore store)
{
    private readonly ConcurrentDictionary<string, (string Revision, PolicyRule Rule)> parsed = new(StringComparer.Ordinal);

    /// <summary>The policy to run: 400 for a malformed URI, 404 when unknown, 410 when retired.</summary>
    public async Task<PolicyRule> GetRunnableAsync(string policyRuleUri, CancellationToken ct)
    {
        var uri = PolicyUri.Parse(Uri.UnescapeDataString(policyRuleUri ?? ""), "policy_rule_uri").ToString();
        if (store is IDocumentRevisions revisions && parsed.TryGetValue(uri, out var known))
        {
            var revision = await revisions.GetRevisionAsync(Collections.Policies, uri, ct)
                ?? throw Problems.NotFound($"policy '{uri}' does not exist");
            if (revision == known.Revision) return Runnable(uri, known.Rule);
        }
        var stored = await store.GetAsync(Collections.Policies, uri, ct)
            ?? throw Problems.NotFound($"policy '{uri}' does not exist");
        PolicyRule rule;
        if (parsed.TryGetValue(uri, out var cached) && cached.Revision == stored.Revision)
        {
            rule = cached.Rule;
        }
        else
        {
            rule = PolicyRule.FromJson(stored.Body);
            parsed[uri] = (stored.Revision, rule);
        }
        return Runnable(uri, rule);
    }

    private static PolicyRule Runnable(string uri, PolicyRule rule) =>
        rule.IsRetired ? throw Problems.Retired($"policy '{uri}' is retired") : rule;
}
