using Dapr.Actors.Client;
using Dapr.Workflow;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Workflows.Activities;

namespace PolicyGrid.Workflows;

public static class GraphWorkflowModule
{
    /// <summary>Registers the graph workflow, its activity and the actor proxy it calls functions through.</summary>
    public static IServiceCollection AddPolicyGraphWorkflow(this IServiceCollection services)
    {
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<IActorProxyFactory>(new ActorProxyFactory(new ActorProxyOptions { UseJsonSerialization = true }));
        services.AddDaprWorkflow(options =>
        {
            // Registered under their type names, which GraphWorkflows.WorkflowName / CallNodeActivity spell for the registry.
            options.RegisterWorkflow<PolicyGraphWorkflow>();
            options.RegisterActivity<CallFunctionActivity>();
        });
        services.AddSingleton<GraphWorkflowRuns>();
        return services;
    }

    /// <summary>
    /// <c>POST /run_graph</c>: the registry's way in (service invocation). Runs the workflow here, where it is registered,
    /// and answers its output; 504 when the deadline passed (the instance is terminated).
    /// </summary>
    public static IEndpointRouteBuilder MapPolicyGraphWorkflow(this IEndpointRouteBuilder app)
    {
        app.MapPost("/" + DaprGraphRunner.RunMethod, async (GraphRunRequest request, GraphWorkflowRuns runs, CancellationToken ct) =>
        {
            try
            {
                return Results.Json(await runs.RunAsync(request, ct), Json.Options);
            }
            catch (PolicyGridException e)
            {
                return Results.Json(new { success = false, message = e.Message, code = e.Code }, Json.Options, statusCode: e.Status);
            }
        }).WithName("RunGraphWorkflow");
        return app;
    }
}
