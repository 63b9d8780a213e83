using PolicyGrid.Api.Jobs;
using PolicyGrid.Embedded.Jobs;
using PolicyGrid.Kubernetes;

namespace PolicyGrid.Cli.Jobs;

public static class JobsComposition
{
    /// <summary>
    /// How <c>serve</c> runs its own jobs — local OS processes by default, Kubernetes Jobs when
    /// <c>PolicyGrid:Jobs:Launcher</c> is <c>kubernetes</c> — and create-infra's cluster installer.
    /// </summary>
    public static IServiceCollection AddJobLaunchers(this IServiceCollection services, string dataDirectory, IConfiguration configuration)
    {
        var launcher = configuration[$"{JobsOptions.Section}:Launcher"] ?? "local";
        if (string.Equals(launcher, "kubernetes", StringComparison.OrdinalIgnoreCase)) services.AddKubernetesJobLauncher(configuration);
        else services.AddLocalJobLauncher(dataDirectory, configuration);
        services.AddExecutorNodeInstaller(configuration);
        return services;
    }
}
