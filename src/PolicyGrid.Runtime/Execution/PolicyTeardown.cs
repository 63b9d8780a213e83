using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Gives back what this process held for a policy that was deleted or retired (neither can run again): its parsed
/// document (<see cref="PolicyCatalog.Forget"/>) and, unless another version of its name can still run, its workers
/// (<see cref="PythonWorkerPool.StopPolicyAsync"/>: calls using them finish first). A deprecated policy still runs and
/// keeps both. Called by the registry where it runs in this process (serve), and from the registry's policy events
/// where it does not (the Dapr executor and functions apps).
/// </summary>
public sealed class PolicyTeardown(PolicyCatalog catalog, PythonWorkerPool pool, IDocumentStore store, ILogger<PolicyTeardown> logger)
{
    /// <summary>
    /// Tears down what <paramref name="policyRuleUri"/> held; answers whether its workers were stopped. Never throws for
    /// a store that cannot be asked about the other versions: the workers then stay (until idle or evicted), as before.
    /// </summary>
    public async Task<bool> TearDownAsync(string policyRuleUri, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(policyRuleUri);
        catalog.Forget(policyRuleUri);
        if (!PolicyUri.TryParse(policyRuleUri, out var uri, out _)) return false;
        try
        {
            if (await OtherVersionRunsAsync(uri, ct)) return false;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogWarning(e, "policy {PolicyRuleUri} is gone, but whether another version of {Name} still runs could not be read; its workers stay until idle", policyRuleUri, uri.Name);
            return false;
        }
        return await pool.StopPolicyAsync(uri.Name);
    }

    /// <summary>
    /// As <see cref="TearDownAsync"/> for a policy an event says is gone, once the store confirms it (deleted, or
    /// retired): an event that arrives late (the URI registered again since) or that was not the registry's changes
    /// nothing. Answers whether it was gone.
    /// </summary>
    public async Task<bool> TearDownIfGoneAsync(string policyRuleUri, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(policyRuleUri);
        if (!PolicyUri.TryParse(policyRuleUri, out var uri, out _)) return false;
        var stored = await store.GetAsync(Collections.Policies, uri.ToString(), ct);
        if (stored is not null && !IsRetired(stored.Body)) return false;
        await TearDownAsync(uri.ToString(), ct);
        return true;
    }

    // Every version of a name runs in the same workers (a group per policy name): they stay while one can still run.
    private async Task<bool> OtherVersionRunsAsync(PolicyUri gone, CancellationToken ct)
    {
        var id = gone.ToString();
        var byName = new FieldFilter("name", FieldOperator.Eq, JsonValue.Create(gone.Name));
        var skip = 0;
        while (true)
        {
            var page = await store.QueryAsync(Collections.Policies, new DocumentQuery(byName, [], skip, DocumentQuery.MaxLimit), ct);
            if (page.Any(d => d.Id != id && !IsRetired(d.Body))) return true;
            if (page.Count < DocumentQuery.MaxLimit) return false;
            skip += page.Count;
        }
    }

    private static bool IsRetired(JsonObject body) =>
        PolicyStatus.Of(body) == PolicyStatus.Retired;
}
