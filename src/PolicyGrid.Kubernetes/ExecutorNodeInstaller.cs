using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Kubernetes;

/// <summary>
/// create-infra / remove-infra: applies or deletes an executor node's objects in the cluster a
/// kubeconfig points at. Apply is idempotent (create, or replace what is there); delete treats
/// "already gone" as done. The kubeconfig lives only for the call: it is validated by
/// <see cref="KubeconfigGuard"/>, turned into a client, and dropped; nothing of it is logged.
/// </summary>
public sealed class ExecutorNodeInstaller(IOptions<ExecutorNodeOptions> options, ILogger<ExecutorNodeInstaller> logger) : IClusterInstaller
{
    public async Task<InfraReport> InstallAsync(string executorId, JsonObject clusterConfig, CancellationToken ct)
    {
        var config = KubeconfigGuard.ToClientConfiguration(clusterConfig, options.Value.Namespace);
        var ns = config.Namespace!;
        var m = ExecutorNodeManifests.Build(executorId, ns, options.Value);
        using var client = new k8s.Kubernetes(config);
        var changes = new List<InfraChange>
        {
            await ApplyAsync("ServiceAccount", m.ServiceAccount.Metadata, ns,
                () => client.CoreV1.CreateNamespacedServiceAccountAsync(m.ServiceAccount, ns, cancellationToken: ct),
                async () => (await client.CoreV1.ReadNamespacedServiceAccountAsync(m.ServiceAccount.Metadata.Name, ns, cancellationToken: ct)).Metadata,
                () => client.CoreV1.ReplaceNamespacedServiceAccountAsync(m.ServiceAccount, m.ServiceAccount.Metadata.Name, ns, cancellationToken: ct)),
            await ApplyAsync("Role", m.Role.Metadata, ns,
                () => client.RbacAuthorizationV1.CreateNamespacedRoleAsync(m.Role, ns, cancellationToken: ct),
                async () => (await client.RbacAuthorizationV1.ReadNamespacedRoleAsync(m.Role.Metadata.Name, ns, cancellationToken: ct)).Metadata,
                () => client.RbacAuthorizationV1.ReplaceNamespacedRoleAsync(m.Role, m.Role.Metadata.Name, ns, cancellationToken: ct)),
            await ApplyAsync("RoleBinding", m.RoleBinding.Metadata, ns,
                () => client.RbacAuthorizationV1.CreateNamespacedRoleBindingAsync(m.RoleBinding, ns, cancellationToken: ct),
                async () => (await client.RbacAuthorizationV1.ReadNamespacedRoleBindingAsync(m.RoleBinding.Metadata.Name, ns, cancellationToken: ct)).Metadata,
                () => client.RbacAuthorizationV1.ReplaceNamespacedRoleBindingAsync(m.RoleBinding, m.RoleBinding.Metadata.Name, ns, cancellationToken: ct)),
            await ApplyAsync("Deployment", m.Deployment.Metadata, ns,
                () => client.AppsV1.CreateNamespacedDeploymentAsync(m.Deployment, ns, cancellationToken: ct),
                async () => (await client.AppsV1.ReadNamespacedDeploymentAsync(m.Deployment.Metadata.Name, ns, cancellationToken: ct)).Metadata,
                () => client.AppsV1.ReplaceNamespacedDeploymentAsync(m.Deployment, m.Deployment.Metadata.Name, ns, cancellationToken: ct)),
        };
        // A Service keeps its cluster IP across a replace, so the existing one is carried over.
        V1Service? existingService = null;
        changes.Add(await ApplyAsync("Service", m.Service.Metadata, ns,
            () => client.CoreV1.CreateNamespacedServiceAsync(m.Service, ns, cancellationToken: ct),
            async () => (existingService = await client.CoreV1.ReadNamespacedServiceAsync(m.Service.Metadata.Name, ns, cancellationToken: ct)).Metadata,
            () =>
            {
                m.Service.Spec.ClusterIP = existingService?.Spec?.ClusterIP;
                m.Service.Spec.ClusterIPs = existingService?.Spec?.ClusterIPs;
                return client.CoreV1.ReplaceNamespacedServiceAsync(m.Service, m.Service.Metadata.Name, ns, cancellationToken: ct);
            }));
        logger.LogInformation("create-infra for executor {ExecutorId} in namespace {Namespace}: {Changes}", executorId, ns,
            string.Join(", ", changes.Select(c => $"{c.Kind} {c.Name} {c.Action}")));
        return new InfraReport(executorId, ns, ExecutorNodeManifests.ServiceUrl(executorId, ns), changes);
    }

    public async Task<InfraReport> RemoveAsync(string executorId, JsonObject clusterConfig, CancellationToken ct)
    {
        var config = KubeconfigGuard.ToClientConfiguration(clusterConfig, options.Value.Namespace);
        var ns = config.Namespace!;
        var name = KubernetesNames.ExecutorNode(executorId);
        using var client = new k8s.Kubernetes(config);
        // Reverse order of install: stop serving first, take permissions away last.
        var changes = new List<InfraChange>
        {
            await DeleteAsync("Service", name, ns, () => client.CoreV1.DeleteNamespacedServiceAsync(name, ns, cancellationToken: ct)),
            await DeleteAsync("Deployment", name, ns, () => client.AppsV1.DeleteNamespacedDeploymentAsync(name, ns, propagationPolicy: "Foreground", cancellationToken: ct)),
            await DeleteAsync("RoleBinding", name, ns, () => client.RbacAuthorizationV1.DeleteNamespacedRoleBindingAsync(name, ns, cancellationToken: ct)),
            await DeleteAsync("Role", name, ns, () => client.RbacAuthorizationV1.DeleteNamespacedRoleAsync(name, ns, cancellationToken: ct)),
            await DeleteAsync("ServiceAccount", name, ns, () => client.CoreV1.DeleteNamespacedServiceAccountAsync(name, ns, cancellationToken: ct)),
        };
        logger.LogInformation("remove-infra for executor {ExecutorId} in namespace {Namespace}: {Changes}", executorId, ns,
            string.Join(", ", changes.Select(c => $"{c.Kind} {c.Name} {c.Action}")));
        return new InfraReport(executorId, ns, ExecutorNodeManifests.ServiceUrl(executorId, ns), changes);
    }

    private static async Task<InfraChange> ApplyAsync<T>(string kind, V1ObjectMeta meta, string ns,
        Func<Task<T>> create, Func<Task<V1ObjectMeta>> readExisting, Func<Task<T>> replace)
    {
        try
        {
            await create();
            return new InfraChange(kind, meta.Name, ns, "created");
        }
        catch (Exception e) when (KubernetesFailure.IsConflict(e))
        {
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw KubernetesFailure.Describe(e, $"create {kind} {ns}/{meta.Name}");
        }
        try
        {
            meta.ResourceVersion = (await readExisting()).ResourceVersion;
            await replace();
            return new InfraChange(kind, meta.Name, ns, "replaced");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw KubernetesFailure.Describe(e, $"replace {kind} {ns}/{meta.Name}");
        }
    }

    private static async Task<InfraChange> DeleteAsync<T>(string kind, string name, string ns, Func<Task<T>> delete)
    {
        try
        {
            await delete();
            return new InfraChange(kind, name, ns, "deleted");
        }
        catch (Exception e) when (KubernetesFailure.IsNotFound(e))
        {
            return new InfraChange(kind, name, ns, "absent");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw KubernetesFailure.Describe(e, $"delete {kind} {ns}/{name}");
        }
    }
}
