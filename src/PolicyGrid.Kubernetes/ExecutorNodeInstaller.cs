using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime;

namespace PolicyGrid.Kubernetes;

/// <summary>
/// create-infra / remove-infra: applies or deletes an executor node's objects in the cluster a
/// kubeconfig points at. Apply is idempotent (create, or replace what is there); delete treats
/// "already gone" as done. The kubeconfig lives only for the call: it is validated by
/// <see cref="KubeconfigGuard"/>, turned into a client, and dropped; nothing of it is logged.
/// The node is handed the token this server sends it (<c>PolicyGrid:Runtime:RemoteExecutors:Token</c>, read from
/// <paramref name="configuration"/> at each install so a rotated token is what the next install hands out) and requires it.
/// </summary>
public sealed class ExecutorNodeInstaller(IOptions<ExecutorNodeOptions> options, IConfiguration configuration, ILogger<ExecutorNodeInstaller> logger) : IClusterInstaller
{
    public const string RemoteExecutorsSection = RemoteExecutorOptions.Section;

    /// <summary>The node's own minimum for an API token: it refuses to start with a shorter one.</summary>
    public const int MinimumTokenLength = PolicyGrid.Core.Identity.ApiTokens.MinimumLength;

    public async Task<InfraReport> InstallAsync(string executorId, JsonObject clusterConfig, CancellationToken ct)
    {
        var config = KubeconfigGuard.ToClientConfiguration(clusterConfig, options.Value.Namespace);
        var ns = config.Namespace!;
        var serviceUrl = ExecutorNodeManifests.ServiceUrl(executorId, ns);
        var (registryToken, openWarning) = RegistryToken(serviceUrl);
        var m = ExecutorNodeManifests.Build(executorId, ns, options.Value, registryToken);
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
        };
        // Before the Deployment, whose pods read the token from it.
        var secretName = ExecutorNodeManifests.ApiTokenSecretName(executorId);
        if (m.ApiTokenSecret is { } secret)
        {
            V1Secret? applied = null;
            changes.Add(await ApplyAsync("Secret", secret.Metadata, ns,
                async () => applied = await client.CoreV1.CreateNamespacedSecretAsync(secret, ns, cancellationToken: ct),
                async () => (await client.CoreV1.ReadNamespacedSecretAsync(secretName, ns, cancellationToken: ct)).Metadata,
                async () => applied = await client.CoreV1.ReplaceNamespacedSecretAsync(secret, secretName, ns, cancellationToken: ct)));
            // Pods read the token when they start: a Secret that changed (a rotated registry token) rolls them, or the
            // running node would refuse the token the registry now sends.
            m.Deployment.Spec.Template.Metadata.Annotations[ExecutorNodeManifests.ApiTokenVersionAnnotation] = applied?.Metadata?.ResourceVersion ?? "";
        }
        changes.Add(
            await ApplyAsync("Deployment", m.Deployment.Metadata, ns,
                () => client.AppsV1.CreateNamespacedDeploymentAsync(m.Deployment, ns, cancellationToken: ct),
                async () => (await client.AppsV1.ReadNamespacedDeploymentAsync(m.Deployment.Metadata.Name, ns, cancellationToken: ct)).Metadata,
                () => client.AppsV1.ReplaceNamespacedDeploymentAsync(m.Deployment, m.Deployment.Metadata.Name, ns, cancellationToken: ct)));
        // An open node no longer reads a token an earlier install handed it: it is not left lying in the namespace.
        if (m.ApiTokenSecret is null
            && await DeleteAsync("Secret", secretName, ns, () => client.CoreV1.DeleteNamespacedSecretAsync(secretName, ns, cancellationToken: ct)) is { Action: "deleted" } stale)
            changes.Add(stale);
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
        if (openWarning is not null) logger.LogWarning("create-infra for executor {ExecutorId}: {Warning}", executorId, openWarning);
        return new InfraReport(executorId, ns, serviceUrl, changes) { Warnings = openWarning is null ? [] : [openWarning] };
    }

    /// <summary>
    /// The token this server sends the node at <paramref name="serviceUrl"/> (none when it has none, or when
    /// <c>TokenNodes</c> does not list the node), with the warning an open node gets. A token the node would refuse at
    /// start is a 409 here, before anything is applied, rather than a node that restarts forever.
    /// </summary>
    private (string? Token, string? OpenWarning) RegistryToken(string serviceUrl)
    {
        var remote = RemoteExecutorOptions.From(configuration);
        if (remote.TokenFor(new Uri(serviceUrl)) is not { } token)
            return (null, string.IsNullOrEmpty(remote.Token)
                ? $"the node is open: anything that reaches {serviceUrl} can use its whole API, because this server has no node token. " +
                  $"Set {RemoteExecutorsSection}:Token (at least {MinimumTokenLength} characters; list the node in {RemoteExecutorsSection}:TokenNodes) " +
                  "and run create-infra again: the node then requires it"
                : $"the node is open: anything that reaches {serviceUrl} can use its whole API, because {RemoteExecutorsSection}:TokenNodes " +
                  $"does not list it, so this server would not send it {RemoteExecutorsSection}:Token. Add {serviceUrl} to TokenNodes and run " +
                  "create-infra again: the node then requires the token");
        if (token.Length < MinimumTokenLength)
            throw Problems.Conflict(
                $"{RemoteExecutorsSection}:Token is shorter than {MinimumTokenLength} characters, which the node refuses as an API token " +
                "(it would not start); set a longer token on this server and run create-infra again. Nothing was applied");
        if (token.Trim() != token || token.Any(char.IsControl))
            throw Problems.Conflict(
                $"{RemoteExecutorsSection}:Token starts or ends with white space or holds a control character, which no Authorization " +
                "header can carry to the node intact; set a token without them and run create-infra again. Nothing was applied");
        return (token, null);
    }

    public async Task<InfraReport> RemoveAsync(string executorId, JsonObject clusterConfig, CancellationToken ct)
    {
        var config = KubeconfigGuard.ToClientConfiguration(clusterConfig, options.Value.Namespace);
        var ns = config.Namespace!;
        var name = KubernetesNames.ExecutorNode(executorId);
        var secretName = ExecutorNodeManifests.ApiTokenSecretName(executorId);
        using var client = new k8s.Kubernetes(config);
        // Reverse order of install: stop serving first, take permissions away last.
        var changes = new List<InfraChange>
        {
            await DeleteAsync("Service", name, ns, () => client.CoreV1.DeleteNamespacedServiceAsync(name, ns, cancellationToken: ct)),
            await DeleteAsync("Deployment", name, ns, () => client.AppsV1.DeleteNamespacedDeploymentAsync(name, ns, propagationPolicy: "Foreground", cancellationToken: ct)),
            await DeleteAsync("Secret", secretName, ns, () => client.CoreV1.DeleteNamespacedSecretAsync(secretName, ns, cancellationToken: ct)),
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
