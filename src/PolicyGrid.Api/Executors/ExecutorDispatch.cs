using System.Collections.Concurrent;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Executors;

/// <summary>
/// Routes a Type 2 call to the executor a caller named, through the transport registered for its
/// executor_host_uri scheme. Keeps executor_status honest: a transport that answers 503 marks the
/// executor unhealthy, and calls to it then fail fast with 503 — except one probe every
/// <see cref="ProbeInterval"/>, which marks it healthy again when it answers.
/// Executor documents are read through a cache of <see cref="DocumentTtl"/>: execution is the hot
/// path and executors change rarely; this server's own writes drop the entry at once. The cache keeps the
/// transport's executor for the document too, so a call does not parse executor_host_uri again.
/// </summary>
public sealed class ExecutorDispatch(IDocumentStore store, IEnumerable<IExecutorTransport> transports, TimeProvider clock, ExecutorOutages outages)
{
    public static readonly TimeSpan ProbeInterval = TimeSpan.FromSeconds(5);

    public static readonly TimeSpan DocumentTtl = TimeSpan.FromSeconds(1);

    private readonly ConcurrentDictionary<string, DateTimeOffset> lastProbe = new(StringComparer.Ordinal);
    // Target: what ExecutorFor answered for the document, or null when it refused (then every call asks again and hears why).
    private readonly ConcurrentDictionary<string, (StoredDocument Document, PolicyExecutor Executor, IPolicyExecutor? Target, DateTimeOffset Read)> documents = new(StringComparer.Ordinal);

    /// <summary>Drops a cached executor document (after this server changed or removed it).</summary>
    public void Forget(string executorId) => documents.TryRemove(executorId, out _);

    private async Task<(StoredDocument Document, PolicyExecutor Executor, IPolicyExecutor? Target)> ReadAsync(string executorId, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (documents.TryGetValue(executorId, out var cached) && now - cached.Read < DocumentTtl) return (cached.Document, cached.Executor, cached.Target);
        var stored = await store.GetAsync(Collections.Executors, executorId, ct)
            ?? throw Problems.NotFound($"no executor '{executorId}' is registered");
        PolicyExecutor executor;
        try
        {
            executor = PolicyExecutor.FromStored(stored.Body);
        }
        catch (PolicyGridException e) when (e.Status == 400)
        {
            // Stored by other means (an older server, a hand edit): the executor's registration is at fault, not the call.
            throw Problems.BackendError($"executor '{executorId}' is registered with a document this server cannot use: {e.Message}");
        }
        IPolicyExecutor? target;
        try
        {
            target = ExecutorFor(executorId, executor.ExecutorHostUri);
        }
        catch (PolicyGridException)
        {
            target = null;
        }
        documents[executorId] = (stored, executor, target, now);
        return (stored, executor, target);
    }

    public Task<PolicyResult> ExecuteAsync(string executorId, ExecutionRequest request, CallerIdentity caller, CancellationToken ct) =>
        RunAsync(executorId, e => e.ExecuteAsync(request, caller, ct), ct);

    public Task<PolicyResult> ManageAsync(string executorId, ManagementRequest request, CallerIdentity caller, CancellationToken ct) =>
        RunAsync(executorId, e => e.ManageAsync(request, caller, ct), ct);

    /// <summary>
    /// What a registration should hear when this server cannot run Type 2 calls on <paramref name="hostUri"/> (no
    /// transport for its scheme, e.g. dapr:// on the embedded server): the document is stored, for servers that have
    /// one, but every execute_policy and management call through this server would answer 502.
    /// </summary>
    public IReadOnlyList<string> RegistrationWarnings(string executorId, string hostUri) =>
        Uri.TryCreate(hostUri, UriKind.Absolute, out var uri) && !transports.Any(t => t.CanHandle(uri))
            ? [$"this server has no transport for '{uri.Scheme}://' executors: execute_policy and management calls on '{executorId}' through it answer 502 (the executor is stored for servers that have one)"]
            : [];

    /// <summary>The policy executor behind an executor_host_uri, or a 502 naming the scheme nobody handles.</summary>
    public IPolicyExecutor ExecutorFor(string executorId, string hostUri)
    {
        if (!Uri.TryCreate(hostUri, UriKind.Absolute, out var uri))
            throw Problems.BackendError($"executor '{executorId}' has an unreadable executor_host_uri '{hostUri}'");
        var transport = transports.FirstOrDefault(t => t.CanHandle(uri))
            ?? throw Problems.BackendError($"executor '{executorId}' is at '{hostUri}', but this server has no transport for '{uri.Scheme}://' executors");
        return transport.For(uri);
    }

    private async Task<PolicyResult> RunAsync(string executorId, Func<IPolicyExecutor, Task<PolicyResult>> call, CancellationToken ct)
    {
        var (stored, executor, cachedTarget) = await ReadAsync(executorId, ct);
        if (executor.ExecutorStatus == ExecutorStatus.Draining)
            throw LoggedFailures.Mark(new PolicyGridException(503, ErrorCodes.BackendUnavailable, $"executor '{executorId}' is draining and takes no new work") { RetryAfterSeconds = 30 });
        if (executor.ExecutorStatus == ExecutorStatus.Unhealthy && !ProbeDue(executorId))
            throw LoggedFailures.Mark(new PolicyGridException(503, ErrorCodes.BackendUnavailable, $"executor '{executorId}' is marked unhealthy (its last call failed); retrying it at most every {ProbeInterval.TotalSeconds:0} s")
                { RetryAfterSeconds = (int)Math.Ceiling(ProbeInterval.TotalSeconds) });

        var target = cachedTarget ?? ExecutorFor(executorId, executor.ExecutorHostUri);
        PolicyResult result;
        try
        {
            result = await call(target);
        }
        catch (PolicyGridException e) when (ExecutorOutages.IsOutage(e))
        {
            await MarkAsync(stored, ExecutorStatus.Unhealthy, ct);
            outages.Down(executorId, $"{e.Message}; its calls answer 503 at once, except one probe every {ProbeInterval.TotalSeconds:0} s", ", marked unhealthy");
            LoggedFailures.Mark(e);
            throw;
        }
        catch (PolicyGridException e) when (executor.ExecutorStatus == ExecutorStatus.Unhealthy && ExecutorOutages.AnsweredByExecutor(e))
        {
            // The executor answered (a 400, 404, 422, 429, 504 ... about this call): it is up again, whatever it thought of the call.
            await BackUpAsync(stored, ct);
            throw;
        }
        if (executor.ExecutorStatus == ExecutorStatus.Unhealthy) await BackUpAsync(stored, ct);
        return result;
    }

    private bool ProbeDue(string executorId)
    {
        var now = clock.GetUtcNow();
        var last = lastProbe.GetOrAdd(executorId, DateTimeOffset.MinValue);
        return now - last >= ProbeInterval && lastProbe.TryUpdate(executorId, now, last);
    }

    private async Task BackUpAsync(StoredDocument stored, CancellationToken ct)
    {
        var changed = await MarkAsync(stored, ExecutorStatus.Healthy, ct);
        outages.Up(stored.Id, ", marked healthy", changed);
    }

    /// <summary>Whether this call changed the stored status (false: it was so already, or another writer got there first).</summary>
    private async Task<bool> MarkAsync(StoredDocument stored, string status, CancellationToken ct)
    {
        Forget(stored.Id);
        if (stored.Body["executor_status"]?.GetValue<string>() == status) { lastProbe[stored.Id] = clock.GetUtcNow(); return false; }
        var body = (System.Text.Json.Nodes.JsonObject)stored.Body.DeepClone();
        body["executor_status"] = status;
        try
        {
            await store.ReplaceAsync(Collections.Executors, stored.Id, body, stored.Revision, CancellationToken.None);
        }
        catch (PolicyGridException e) when (e.Status is 404 or 409)
        {
            // Someone changed or removed the executor meanwhile; their word wins.
            return false;
        }
        finally
        {
            if (status == ExecutorStatus.Unhealthy) lastProbe[stored.Id] = clock.GetUtcNow();
        }
        return true;
    }
}
