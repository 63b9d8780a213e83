using Dapr.Actors.Client;
using Dapr.Workflow;
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
        return services;
    }
}
