using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Graphs;

namespace PolicyGrid.Embedded.Functions;

public static class FunctionHostingModule
{
    /// <summary>
    /// The embedded Type 4 host and Type 5 runner: functions on <c>inproc://</c> executors run in this process
    /// (restored at start), graphs run in-process along Core's plan. Needs the runtime and storage registered.
    /// </summary>
    public static IServiceCollection AddEmbeddedFunctionsAndGraphs(this IServiceCollection services, IConfiguration configuration)
    {
        services.Configure<FunctionHostOptions>(configuration.GetSection("PolicyGrid:Functions"));
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<LocalFunctionHost>();
        services.AddSingleton<IFunctionHost>(sp => sp.GetRequiredService<LocalFunctionHost>());
        services.AddHostedService(sp => sp.GetRequiredService<LocalFunctionHost>());
        services.AddSingleton<IFunctionHostTransport, LocalFunctionHostTransport>();
        services.AddSingleton<IGraphRunner, LocalGraphRunner>();
        return services;
    }
}
