using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Graphs;

namespace PolicyGrid.Embedded.Functions;

public static class FunctionHostingModule
{
    /// <summary>
    /// The embedded Type 4 host: functions on <c>inproc://</c> executors run in this process's worker pool and are
    /// restored at start. Needs the runtime (worker pool, bundle source) and storage registered.
    /// </summary>
    public static IServiceCollection AddEmbeddedFunctionHost(this IServiceCollection services, IConfiguration configuration)
    {
        services.Configure<FunctionHostOptions>(configuration.GetSection("PolicyGrid:Functions"));
        services.AddSingleton<LocalFunctionHost>();
        services.AddSingleton<IFunctionHost>(sp => sp.GetRequiredService<LocalFunctionHost>());
        services.AddHostedService(sp => sp.GetRequiredService<LocalFunctionHost>());
        services.AddSingleton<IFunctionHostTransport, LocalFunctionHostTransport>();
        return services;
    }

    /// <summary>
    /// The embedded Type 5 runner: graphs run in-process along Core's plan, calling nodes through the registry's
    /// <see cref="IFunctionInvoker"/>; the server's stop waits for node calls its cancelled runs left running (<see cref="RunningNodeCalls"/>).
    /// </summary>
    public static IServiceCollection AddEmbeddedGraphRunner(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<RunningNodeCalls>();
        // Registered after the runtime's services, so it stops before them: the stop waits for node calls a cancelled run left
        // running while the worker pool can still end them and the decision log (closed when the container is disposed) record them.
        services.AddHostedService(sp => sp.GetRequiredService<RunningNodeCalls>());
        services.Replace(ServiceDescriptor.Singleton<IGraphRunner, LocalGraphRunner>());
        return services;
    }
}
