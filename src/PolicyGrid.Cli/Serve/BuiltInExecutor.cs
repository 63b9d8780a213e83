using PolicyGrid.Api.Executors;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Cli.Serve;

/// <summary>
/// Registers the built-in executor <c>local</c> (<c>inproc://local</c>, this server's own worker
/// pool) at start. An operator's edits to its metadata survive restarts; its address and a stale
/// unhealthy mark do not, since this process is by definition up.
/// </summary>
public sealed class BuiltInExecutor(IDocumentStore store, ILogger<BuiltInExecutor> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var existing = await store.GetAsync(Collections.Executors, ExecutorsApi.BuiltInId, cancellationToken);
        if (existing is null)
        {
            var executor = PolicyExecutor.FromJson(new()
            {
                ["executor_id"] = ExecutorsApi.BuiltInId,
                ["executor_host_uri"] = ExecutorsApi.BuiltInHostUri,
                ["executor_metadata"] = new System.Text.Json.Nodes.JsonObject { ["labels"] = new System.Text.Json.Nodes.JsonObject { ["builtin"] = "true" } },
                ["executor_hardware_info"] = new System.Text.Json.Nodes.JsonObject
                {
                    ["vcpus"] = new System.Text.Json.Nodes.JsonObject { ["count"] = Environment.ProcessorCount },
                    ["memory"] = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes,
                },
            });
            try
            {
                await store.CreateAsync(Collections.Executors, executor.ExecutorId, executor.ToJson(), cancellationToken);
            }
            catch (PolicyGridException e) when (e.Status == 409)
            {
                // Another instance on the same data directory registered it first.
            }
            return;
        }
        var body = (System.Text.Json.Nodes.JsonObject)existing.Body.DeepClone();
        var changed = false;
        if (body["executor_host_uri"]?.GetValue<string>() != ExecutorsApi.BuiltInHostUri) { body["executor_host_uri"] = ExecutorsApi.BuiltInHostUri; changed = true; }
        if (body["executor_status"]?.GetValue<string>() == ExecutorStatus.Unhealthy) { body["executor_status"] = ExecutorStatus.Healthy; changed = true; }
        if (changed)
        {
            await store.ReplaceAsync(Collections.Executors, ExecutorsApi.BuiltInId, body, existing.Revision, cancellationToken);
            logger.LogInformation("built-in executor '{ExecutorId}' reset to {Uri}", ExecutorsApi.BuiltInId, ExecutorsApi.BuiltInHostUri);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
