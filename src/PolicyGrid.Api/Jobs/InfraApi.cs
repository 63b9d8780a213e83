using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Jobs;

/// <summary>
/// create-infra / remove-infra: install or remove an executor node in the cluster a kubeconfig
/// points at. The kubeconfig is used for this one call and is never stored, echoed or logged.
/// After an install, the executor's executor_host_uri is the node's in-cluster service URL.
/// </summary>
public static class InfraApi
{
    public static IEndpointRouteBuilder MapInfraApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/executor").WithTags("Executors");
        api.MapPost("/{id}/create-infra", Create).WithName("CreateExecutorInfra").WithSummary("Install this executor's node into a Kubernetes cluster")
            .WithDescription("Body: {\"cluster_config\": <kubeconfig as JSON>}. Applies the node's ServiceAccount, Role, RoleBinding, Secret (the registry's node token, PolicyGrid:Runtime:RemoteExecutors:Token, which the node then requires), Deployment (a Dapr app) and Service idempotently; without a node token for it the node is open, which warnings says. exec/auth-provider plugins and file paths are refused. The kubeconfig is not kept.");
        api.MapDelete("/{id}/remove-infra", Remove).WithName("RemoveExecutorInfra").WithSummary("Remove this executor's node from a Kubernetes cluster");
        return app;
    }

    public static async Task<EnvelopeOk<JsonObject>> Create(string id, JsonBody body, IDocumentStore store, IServiceProvider services, ILoggerFactory loggers, CancellationToken ct)
    {
        var config = ClusterConfig(body);
        var stored = await store.GetAsync(Collections.Executors, id, ct) ?? throw Problems.NotFound($"no executor '{id}' is registered");
        var report = await Installer(services).InstallAsync(id, config, ct);
        // Only the address changes here, after the install: the rest of the document is kept as it is stored now (even an
        // older shape), re-read if someone updated it while the install ran, so their change is not overwritten.
        var saved = await Documents.OptimisticUpdate.ApplyAsync(store, Collections.Executors, id, null, current =>
        {
            var updated = (JsonObject)current.Body.DeepClone();
            updated["executor_host_uri"] = report.ServiceUrl;
            return PolicyExecutor.FromStored(updated).ToJson();
        }, () => Problems.NotFound($"executor '{id}' was deleted while its node was being installed"),
           (asked, now) => Problems.Conflict($"executor '{id}' changed during the install"), ct);
        loggers.CreateLogger("PolicyGrid.Api.Jobs.InfraApi").LogInformation("executor {ExecutorId} now points at {Url}", id, report.ServiceUrl);
        return Answer.Ok(Describe(report, saved.Body));
    }

    public static async Task<EnvelopeOk<JsonObject>> Remove(string id, JsonBody body, IDocumentStore store, IServiceProvider services, CancellationToken ct)
    {
        var config = ClusterConfig(body);
        var stored = await store.GetAsync(Collections.Executors, id, ct) ?? throw Problems.NotFound($"no executor '{id}' is registered");
        var report = await Installer(services).RemoveAsync(id, config, ct);
        return Answer.Ok(Describe(report, stored.Body));
    }

    private static JsonObject ClusterConfig(JsonBody body)
    {
        var request = body.RequireObject();
        return request["cluster_config"] switch
        {
            JsonObject config => config,
            null => throw Problems.Validation("cluster_config", "is required: the target cluster's kubeconfig as a JSON object"),
            _ => throw Problems.Validation("cluster_config", "must be a kubeconfig as a JSON object (convert YAML to JSON first)"),
        };
    }

    private static IClusterInstaller Installer(IServiceProvider services) =>
        services.GetService<IClusterInstaller>() ?? throw Problems.BackendUnavailable("this server cannot install executor nodes (no cluster installer is configured)");

    private static JsonObject Describe(InfraReport report, JsonObject executor) => new()
    {
        ["executor_id"] = report.ExecutorId,
        ["namespace"] = report.Namespace,
        ["service_url"] = report.ServiceUrl,
        ["changes"] = new JsonArray(report.Changes.Select(c => (JsonNode)new JsonObject
        {
            ["kind"] = c.Kind, ["name"] = c.Name, ["namespace"] = c.Namespace, ["action"] = c.Action,
        }).ToArray()),
        ["executor"] = executor.DeepClone(),
        ["warnings"] = new JsonArray(report.Warnings.Select(w => (JsonNode)JsonValue.Create(w)).ToArray()),
    };
}
