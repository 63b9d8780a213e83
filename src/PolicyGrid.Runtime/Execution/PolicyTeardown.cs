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
/// where it does not (the Dapr executor and functions apps); <see cref="GonePolicySweep"/> catches up on the events lost.
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

    /// <summary>
    /// What <see cref="TearDownIfGoneAsync"/> does for a policy event, for the events that never arrived (the Dapr shape):
    /// for each policy whose workers run in this process, one read of the store for the versions of its name; when none
    /// of them can run (each deleted or retired) its parsed documents and its workers go, and so do the parsed documents
    /// of its deleted and retired versions when another still runs. Reads nothing when no policy's workers run. Answers
    /// how many policies' workers were stopped.
    /// </summary>
    /// <remarks>
    /// A function deployed from a policy deleted with <c>?force=true</c> keeps running its own copy: while its replica is
    /// loaded (<see cref="PythonWorkerPool.RunningPolicy.HoldsLongLivedInstances"/>) its workers stay. The event stops them
    /// once and the function's next call starts them again; done every sweep, that would be a worker start and a restore
    /// from saved state every few minutes, and the loss of what the instance holds beyond its saved state each time.
    /// </remarks>
    public async Task<int> TearDownGoneAsync(CancellationToken ct = default)
    {
        var stopped = 0;
        foreach (var running in pool.RunningPolicies())
        {
            var versions = await VersionsOfAsync(running.Name, ct);
            var runnable = versions.Where(v => !v.Retired).Select(v => v.Id).ToHashSet(StringComparer.Ordinal);
            catalog.ForgetVersionsOf(running.Name, runnable);
            if (runnable.Count > 0 || (versions.Count == 0 && running.HoldsLongLivedInstances)) continue;
            if (await pool.StopPolicyAsync(running.Name)) stopped++;
        }
        if (stopped > 0) logger.LogInformation("stopped the workers of {Count} deleted or retired policies whose policy event did not reach this app", stopped);
        return stopped;
    }

    // Every version of a name runs in the same workers (a group per policy name): they stay while one can still run.
    private async Task<bool> OtherVersionRunsAsync(PolicyUri gone, CancellationToken ct)
    {
        var id = gone.ToString();
        return (await VersionsOfAsync(gone.Name, ct)).Any(v => v.Id != id && !v.Retired);
    }

    // The stored versions of a policy name, each with whether it is retired: one query (a page per 1000 versions).
    private async Task<List<(string Id, bool Retired)>> VersionsOfAsync(string name, CancellationToken ct)
    {
        var byName = new FieldFilter("name", FieldOperator.Eq, JsonValue.Create(name));
        var versions = new List<(string Id, bool Retired)>();
        while (true)
        {
            var page = await store.QueryAsync(Collections.Policies, new DocumentQuery(byName, [], versions.Count, DocumentQuery.MaxLimit), ct);
            versions.AddRange(page.Select(d => (d.Id, IsRetired(d.Body))));
            if (page.Count < DocumentQuery.MaxLimit) return versions;
        }
    }

    private static bool IsRetired(JsonObject body) =>
        PolicyStatus.Of(body) == PolicyStatus.Retired;
}
