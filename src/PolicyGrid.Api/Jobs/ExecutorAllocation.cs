using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Api.Jobs;

/// <summary>
/// Chooses the executor for a job submitted without one. Built-in rule: among healthy executors
/// whose <c>executor_metadata.labels</c> carry every node_selector pair, the one with the most free
/// vCPUs (<c>executor_hardware_info.vcpus.free</c> when the executor reports it, else
/// <c>vcpus.count</c> minus the jobs already pending or running there); ties go to the fewest
/// active jobs, then the smallest id, so the choice is repeatable. When
/// <see cref="JobsOptions.AllocatorPolicy"/> names a policy, that policy decides among the same candidates.
/// An executor whose stored document cannot be read for this (an older server took any hardware info) is passed
/// over with a warning.
/// </summary>
public sealed class ExecutorAllocation(IDocumentStore store, IEnumerable<IExecutorTransport> executors, IOptions<JobsOptions> options,
    ILogger<ExecutorAllocation> logger)
{
    public sealed record Candidate(PolicyExecutor Executor, double FreeVcpus, int ActiveJobs);

    public async Task<PolicyExecutor> ChooseAsync(Job job, CancellationToken ct)
    {
        var candidates = await CandidatesAsync(job, ct);
        if (candidates.Count == 0)
            throw new PolicyGridException(503, ErrorCodes.BackendUnavailable,
                $"no healthy executor matches node_selector {job.NodeSelector.ToJsonString()}; register one or submit to a named executor") { RetryAfterSeconds = 30 };
        if (options.Value.AllocatorPolicy.Length > 0) return await AskPolicyAsync(job, candidates, ct);
        return candidates
            .OrderByDescending(c => c.FreeVcpus)
            .ThenBy(c => c.ActiveJobs)
            .ThenBy(c => c.Executor.ExecutorId, StringComparer.Ordinal)
            .First().Executor;
    }

    public async Task<IReadOnlyList<Candidate>> CandidatesAsync(Job job, CancellationToken ct)
    {
        // Every open job and every executor, however many (a count of them, not the documents, is kept).
        var active = FilterParser.Parse(new JsonObject { ["status"] = new JsonObject { ["$in"] = new JsonArray(JobStatus.Pending, JobStatus.Running) } });
        var activeJobs = new Dictionary<string, int>(StringComparer.Ordinal);
        await foreach (var doc in store.QueryEveryAsync(Collections.Jobs, active, ct))
        {
            var executorId = doc.Body["executor_id"]?.GetValue<string>() ?? "";
            activeJobs[executorId] = activeJobs.GetValueOrDefault(executorId) + 1;
        }
        var result = new List<Candidate>();
        await foreach (var doc in store.QueryEveryAsync(Collections.Executors, ct))
        {
            if (Allocatable(doc) is not { } executor) continue;
            if (executor.ExecutorStatus != ExecutorStatus.Healthy || !Matches(job.NodeSelector, executor)) continue;
            var running = activeJobs.GetValueOrDefault(executor.ExecutorId);
            result.Add(new Candidate(executor, FreeVcpus(executor, running), running));
        }
        return result;
    }

    private PolicyExecutor? Allocatable(StoredDocument stored)
    {
        if (PolicyExecutor.ForAllocation(stored.Body, out var problems) is { } executor) return executor;
        logger.LogWarning("executor {Executor} is left out of job allocation: its stored document is not valid ({Problems}); fix it with PUT /executor/{Executor}",
            stored.Id, string.Join("; ", problems), stored.Id);
        return null;
    }

    private static bool Matches(JsonObject selector, PolicyExecutor executor)
    {
        var labels = executor.ExecutorMetadata["labels"] as JsonObject;
        foreach (var (key, wanted) in selector)
        {
            var have = labels?[key];
            if (have is null || !JsonNode.DeepEquals(have, wanted)) return false;
        }
        return true;
    }

    private static double FreeVcpus(PolicyExecutor executor, int activeJobs) =>
        executor.VcpuFree ?? executor.VcpuCount - activeJobs
        ?? -activeJobs; // unknown size: rank by load alone, below any executor that reports capacity

    // The operator's allocator policy runs on this server's own executor and must name one of the candidates.
    private async Task<PolicyExecutor> AskPolicyAsync(Job job, IReadOnlyList<Candidate> candidates, CancellationToken ct)
    {
        var uri = options.Value.AllocatorPolicy;
        var local = new Uri("inproc://local");
        var transport = executors.FirstOrDefault(t => t.CanHandle(local))
            ?? throw Problems.BackendUnavailable($"the allocator policy '{uri}' is configured, but this server has no local executor to run it");
        var input = new JsonObject
        {
            ["job"] = job.ToJson(),
            ["executors"] = new JsonArray(candidates.Select(c =>
            {
                var doc = c.Executor.ToJson();
                doc["free_vcpus"] = c.FreeVcpus;
                doc["active_jobs"] = c.ActiveJobs;
                return (JsonNode)doc;
            }).ToArray()),
        };
        PolicyResult answer;
        try
        {
            answer = await transport.For(local).ExecuteAsync(new ExecutionRequest(uri, input), new CallerIdentity("job-allocator"), ct);
        }
        catch (PolicyGridException e) when (e.Status is 404 or 410 or 422 or 504 or 400)
        {
            throw Problems.BackendError($"the allocator policy '{uri}' failed: {e.Message}");
        }
        var chosen = answer.Output["executor_id"] is JsonValue v && v.TryGetValue<string>(out var id) ? id : "";
        return candidates.FirstOrDefault(c => c.Executor.ExecutorId == chosen)?.Executor
            ?? throw Problems.BackendError($"the allocator policy '{uri}' chose executor '{chosen}', which is not one of the candidates ({string.Join(", ", candidates.Select(c => c.Executor.ExecutorId))})");
    }
}
