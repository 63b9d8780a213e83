using k8s;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Kubernetes;

public static class KubernetesJobsExtensions
{
    /// <summary>
    /// Registers the Kubernetes job launcher as this node's <see cref="IJobLauncher"/>. Inside a pod it
    /// uses the pod's ServiceAccount; outside (development) the operator's default kubeconfig.
    /// </summary>
    public static IServiceCollection AddKubernetesJobLauncher(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<KubernetesJobOptions>().Bind(configuration.GetSection(KubernetesJobOptions.Section)).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Microsoft.Extensions.Options.IValidateOptions<KubernetesJobOptions>, KubernetesJobOptionsValidator>());
        services.TryAddSingleton<IKubernetes>(_ => new k8s.Kubernetes(
            KubernetesClientConfiguration.IsInCluster()
                ? KubernetesClientConfiguration.InClusterConfig()
                : KubernetesClientConfiguration.BuildDefaultConfig()));
        services.AddSingleton<KubernetesJobLauncher>();
        services.Replace(ServiceDescriptor.Singleton<IJobLauncher>(sp => sp.GetRequiredService<KubernetesJobLauncher>()));
        return services;
    }

    /// <summary>Registers create-infra / remove-infra (<see cref="IClusterInstaller"/>).</summary>
    public static IServiceCollection AddExecutorNodeInstaller(this IServiceCollection services, IConfiguration configuration)
    {
        services.Configure<ExecutorNodeOptions>(configuration.GetSection(ExecutorNodeOptions.Section));
        services.TryAddSingleton<IClusterInstaller, ExecutorNodeInstaller>();
        return services;
    }
}
