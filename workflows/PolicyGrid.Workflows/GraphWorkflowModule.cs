using System.Text.Json;
using System.Text.Json.Nodes;
using Dapr.Actors.Client;
using Dapr.Workflow;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Api.Functions;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Runtime;
using PolicyGrid.Workflows.Activities;

namespace PolicyGrid.Workflows;

public static class GraphWorkflowModule
{
    /// <summary>
    /// Registers the graph workflow, its activity and what it calls functions through: the actor proxy, and for functions
    /// on http(s) executors the registry's executor node transport, with the node token of
    /// <c>PolicyGrid:Runtime:RemoteExecutors</c> (set it here as on the registry).
    /// </summary>
    public static IServiceCollection AddPolicyGraphWorkflow(this IServiceCollection services)
    {
        services.AddSingleton(TimeProvider.System);
        services.AddOptions<PolicyRuntimeOptions>().BindConfiguration(PolicyRuntimeOptions.Section);
        // Waits as long as the registry's proxy does (ActorFunctionHost): a function may run up to Execution:MaxTimeout,
        // and with the SDK's default (100 s) a longer node was cut off as a 503 while its actor still ran it.
        services.AddSingleton<IActorProxyFactory>(sp => new ActorProxyFactory(new ActorProxyOptions
        {
            UseJsonSerialization = true,
            RequestTimeout = ActorFunctionHost.Bound(sp.GetRequiredService<IOptions<PolicyRuntimeOptions>>().Value),
        }));
        services.AddRemoteFunctionHosts();
        services.AddDaprWorkflow(options =>
        {
            // Registered under their type names, which GraphWorkflows.WorkflowName / CallNodeActivity spell for the registry.
            options.RegisterWorkflow<PolicyGraphWorkflow>();
            options.RegisterActivity<CallFunctionActivity>();
        });
        services.AddSingleton<IGraphWorkflowInstances, DaprGraphWorkflowInstances>();
        services.AddSingleton<GraphWorkflowRuns>();
        return services;
    }

    /// <summary>
    /// <c>POST /run_graph</c>: the registry's way in (service invocation). Runs the workflow here, where it is registered,
    /// and answers its output; 400 naming the field for a bad body, 502 when the workflow did not complete, 504 when the
    /// deadline passed (the instance is terminated).
    /// </summary>
    public static IEndpointRouteBuilder MapPolicyGraphWorkflow(this IEndpointRouteBuilder app)
    {
        app.MapPost("/" + DaprGraphRunner.RunMethod, async (HttpRequest http, GraphWorkflowRuns runs, CancellationToken ct) =>
        {
            try
            {
                var request = GraphRunRequest.FromJson(await ReadJsonAsync(http, ct));
                return Results.Json(await runs.RunAsync(request, ct), Json.Options);
            }
            catch (PolicyGridException e)
            {
                return Results.Json(ErrorEnvelope.From(e), Json.Options, statusCode: e.Status);
            }
        }).WithName("RunGraphWorkflow");
        return app;
    }

    // Read by hand rather than bound: the registry writes snake_case (Json.Options, not ASP.NET's camelCase default),
    // and a body that is not JSON still gets the contract's envelope.
    private static async Task<JsonNode?> ReadJsonAsync(HttpRequest http, CancellationToken ct)
    {
        try
        {
            return await JsonNode.ParseAsync(http.Body, cancellationToken: ct);
        }
        catch (JsonException e)
        {
            throw Problems.BadRequest($"request body is not valid JSON: {e.Message}");
        }
    }
}
