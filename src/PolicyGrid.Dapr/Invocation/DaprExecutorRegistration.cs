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
public sealed class DaprExecutorRegistration(IDocumentStore documents, ILogger<DaprExecutorRegistration> logger) : IHostedService
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

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (await documents.GetAsync(Collections.Executors, DaprNames.ExecutorId, cancellationToken) is not null) return;
            await documents.CreateAsync(Collections.Executors, DaprNames.ExecutorId, Document(), cancellationToken);
            logger.LogInformation("Registered executor '{Id}' at {Uri}", DaprNames.ExecutorId, DaprNames.ExecutorHostUri);
        }
        catch (PolicyGridException e) when (e.Status == 409)
        {
            // Another registry replica registered it first.
        }
        catch (PolicyGridException e) when (e.Status is 502 or 503)
        {
            // The sidecar often starts after the app; the registry must still come up and answer /healthz.
            logger.LogWarning(e, "Could not register executor '{Id}' yet: {Message}", DaprNames.ExecutorId, e.Message);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
