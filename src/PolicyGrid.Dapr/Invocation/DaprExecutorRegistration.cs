using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr.Invocation;

/// <summary>
/// Makes sure the registry's built-in executor exists: id <c>dapr</c>, executor_host_uri
/// <c>dapr://policy-executor</c>, so Type 2 calls work on a fresh install as <c>local</c> does in
/// <c>serve</c>. An operator's later edits (labels, status) are kept: an existing document is never overwritten.
/// </summary>
public sealed class DaprExecutorRegistration(IDocumentStore documents, ILogger<DaprExecutorRegistration> logger) : BackgroundService
{
    /// <summary>The executor document, built through Core so it carries every field as any other executor does.</summary>
    public static JsonObject Document() => PolicyExecutor.FromJson(new JsonObject
    {
        ["executor_id"] = DaprNames.ExecutorId,
        ["executor_host_uri"] = DaprNames.ExecutorHostUri,
        ["executor_metadata"] = new JsonObject
        {
            ["labels"] = new JsonObject { ["shape"] = "dapr" },
            ["description"] = "Built-in: runs policies on the policy-executor Dapr app through service invocation",
        },
    }).ToJson();

    /// <summary>Pause between attempts while the sidecar or the store is not up yet.</summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Attempts before giving up (and logging an error): about two minutes at the default interval.</summary>
    public int MaxAttempts { get; init; } = 60;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        for (var attempt = 1; !stoppingToken.IsCancellationRequested; attempt++)
        {
            try
            {
                if (await documents.GetAsync(Collections.Executors, DaprNames.ExecutorId, stoppingToken) is not null) return;
                await documents.CreateAsync(Collections.Executors, DaprNames.ExecutorId, Document(), stoppingToken);
                logger.LogInformation("Registered executor '{Id}' at {Uri}", DaprNames.ExecutorId, DaprNames.ExecutorHostUri);
                return;
            }
            catch (PolicyGridException e) when (e.Status == 409)
            {
                return; // another registry replica registered it first
            }
            catch (PolicyGridException e) when (e.Status is 502 or 503)
            {
                // The sidecar often starts after the app: keep the registry up (it answers /healthz) and try again.
                if (attempt >= MaxAttempts)
                {
                    logger.LogError(e, "Gave up registering executor '{Id}' after {Attempts} attempts: {Message}", DaprNames.ExecutorId, attempt, e.Message);
                    return;
                }
                logger.LogWarning("Could not register executor '{Id}' yet (attempt {Attempt}): {Message}", DaprNames.ExecutorId, attempt, e.Message);
            }
            await Task.Delay(RetryInterval, stoppingToken);
        }
    }
}
