using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Embedded.Jobs;

public static class LocalJobs
{
    /// <summary>Runs this server's own jobs (executor <c>inproc://local</c>) as local OS processes sharing <paramref name="dataDirectory"/>.</summary>
    public static IServiceCollection AddLocalJobLauncher(this IServiceCollection services, string dataDirectory, IConfiguration configuration)
    {
        var options = new LocalJobOptions();
        configuration.GetSection(LocalJobOptions.Section).Bind(options);
        options.DataDirectory = Path.GetFullPath(dataDirectory);
        services.AddSingleton(options);
        services.TryAddSingleton<PolicyProcesses>();
        services.AddSingleton<LocalJobLauncher>();
        services.TryAddSingleton<IJobLauncher>(sp => sp.GetRequiredService<LocalJobLauncher>());
        return services;
    }
}
