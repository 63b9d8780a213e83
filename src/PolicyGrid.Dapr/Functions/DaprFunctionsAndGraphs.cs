using Dapr.Actors.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Graphs;

namespace PolicyGrid.Dapr.Functions;

public static class DaprFunctionsAndGraphs
{
    /// <summary>
    /// For the registry: functions on <c>dapr://</c> executors are actors in <c>policy-functions</c>, reached by proxy
    /// (JSON remoting, as the functions app registers them); graphs run as <c>PolicyGraphWorkflow</c> in <c>policy-graphs</c>.
    /// </summary>
    public static IServiceCollection AddDaprFunctionsAndGraphs(this IServiceCollection services)
    {
        services.TryAddSingleton<IActorProxyFactory>(new ActorProxyFactory(new ActorProxyOptions { UseJsonSerialization = true }));
        services.AddSingleton<ActorFunctionHost>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IFunctionHostTransport, ActorFunctionHostTransport>());
        services.Replace(ServiceDescriptor.Singleton<IGraphRunner, DaprGraphRunner>());
        return services;
    }
}
