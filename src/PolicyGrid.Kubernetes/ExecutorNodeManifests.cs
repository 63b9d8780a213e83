using k8s.Models;

namespace PolicyGrid.Kubernetes;

/// <summary>
/// The objects create-infra puts into a cluster for one executor node: a ServiceAccount whose Role
/// allows only Jobs (and reading their pods' logs) in the node's own namespace, the Deployment
/// (a Dapr app), a ClusterIP Service that the registry reaches it through and, when the registry has
/// a node token, the Secret that hands it to the node (<see cref="ApiTokenSecret"/>, null otherwise).
/// </summary>
public sealed record ExecutorNodeManifests(
    V1ServiceAccount ServiceAccount,
    V1Role Role,
    V1RoleBinding RoleBinding,
    V1Deployment Deployment,
    V1Service Service,
    V1Secret? ApiTokenSecret = null)
{
    public const int ServicePort = 80;

    /// <summary>The key of the registry's node token in <see cref="ApiTokenSecret"/>.</summary>
    public const string ApiTokenKey = "token";

    /// <summary>The name the node gives the registry's token: the caller its decision log records for the registry.</summary>
    public const string RegistryTokenName = "registry";

    /// <summary>Pod-template annotation holding the resourceVersion of the token Secret the pods were started with.</summary>
    public const string ApiTokenVersionAnnotation = "policygrid.io/api-token-version";

    public static string ApiTokenSecretName(string executorId) => $"{KubernetesNames.ExecutorNode(executorId)}-api-token";

    /// <summary>The Kubernetes secret (key <c>token</c>) holding the Dapr API token of the node's sidecar.</summary>
    public const string DaprApiTokenSecret = "policygrid-dapr-api-token";

    /// <summary>
    /// What a root node needs to run each policy worker as a uid of its own: SETUID/SETGID to switch to it, CHOWN to hand
    /// it its temp dir, KILL to end it past its deadline, DAC_OVERRIDE to remove what it left in its temp dir.
    /// </summary>
    public static readonly IReadOnlyList<string> WorkerIsolationCapabilities = ["CHOWN", "DAC_OVERRIDE", "KILL", "SETGID", "SETUID"];

    public static string ServiceUrl(string executorId, string @namespace) =>
        $"http://{KubernetesNames.ExecutorNode(executorId)}.{@namespace}.svc.cluster.local:{ServicePort}";

    /// <summary>
    /// The node's objects. With <paramref name="registryToken"/> (the token the registry sends this node) the node requires
    /// it as an API token with <c>write</c> scope, read from <see cref="ApiTokenSecret"/>; without one it is left open.
    /// </summary>
    public static ExecutorNodeManifests Build(string executorId, string @namespace, ExecutorNodeOptions options, string? registryToken = null)
    {
        var name = KubernetesNames.ExecutorNode(executorId);
        var labels = new Dictionary<string, string>
        {
            ["app.kubernetes.io/name"] = "policy-executor",
            ["app.kubernetes.io/instance"] = name,
            ["app.kubernetes.io/managed-by"] = KubernetesNames.ManagedBy,
        };
        V1ObjectMeta Meta(string? objectName = null) =>
            new() { Name = objectName ?? name, NamespaceProperty = @namespace, Labels = new Dictionary<string, string>(labels) };
        var secured = !string.IsNullOrEmpty(registryToken);
        var secret = secured
            ? new V1Secret
            {
                ApiVersion = "v1", Kind = "Secret", Metadata = Meta(ApiTokenSecretName(executorId)), Type = "Opaque",
                StringData = new Dictionary<string, string> { [ApiTokenKey] = registryToken! },
            }
            : null;

        var serviceAccount = new V1ServiceAccount
        {
            ApiVersion = "v1", Kind = "ServiceAccount", Metadata = Meta(),
        };
        var role = new V1Role
        {
            ApiVersion = "rbac.authorization.k8s.io/v1", Kind = "Role", Metadata = Meta(),
            Rules =
            [
                new V1PolicyRule { ApiGroups = ["batch"], Resources = ["jobs"], Verbs = ["create", "get", "list", "watch", "delete"] },
                new V1PolicyRule { ApiGroups = [""], Resources = ["pods"], Verbs = ["get", "list"] },
                new V1PolicyRule { ApiGroups = [""], Resources = ["pods/log"], Verbs = ["get"] },
            ],
        };
        var binding = new V1RoleBinding
        {
            ApiVersion = "rbac.authorization.k8s.io/v1", Kind = "RoleBinding", Metadata = Meta(),
            RoleRef = new V1RoleRef { ApiGroup = "rbac.authorization.k8s.io", Kind = "Role", Name = name },
            Subjects = [new Rbacv1Subject { Kind = "ServiceAccount", Name = name, NamespaceProperty = @namespace }],
        };
        var serviceUrl = ServiceUrl(executorId, @namespace);
        var deployment = new V1Deployment
        {
            ApiVersion = "apps/v1", Kind = "Deployment", Metadata = Meta(),
            Spec = new V1DeploymentSpec
            {
                Replicas = options.Replicas,
                Selector = new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["app.kubernetes.io/instance"] = name } },
                Template = new V1PodTemplateSpec
                {
                    Metadata = new V1ObjectMeta
                    {
                        Labels = new Dictionary<string, string>(labels),
                        Annotations = new Dictionary<string, string>
                        {
                            ["dapr.io/enabled"] = "true",
                            ["dapr.io/app-id"] = name,
                            ["dapr.io/app-port"] = options.ContainerPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
                            ["dapr.io/app-protocol"] = "http",
                            // Only holders of this token may use the sidecar: not the policy workers in the pod.
                            ["dapr.io/api-token-secret"] = DaprApiTokenSecret,
                        },
                    },
                    Spec = new V1PodSpec
                    {
                        ServiceAccountName = name,
                        // The node launches Jobs with this account; its token is mounted below readable by root only
                        // (the default mount is world-readable, and the policy workers are other uids in this pod).
                        AutomountServiceAccountToken = false,
                        // Root with only the capabilities the container adds: each policy worker then runs as a uid of
                        // its own and can neither signal, trace nor read the node or another worker.
                        SecurityContext = new V1PodSecurityContext
                        {
                            RunAsNonRoot = false,
                            RunAsUser = 0,
                            RunAsGroup = 0,
                            SeccompProfile = new V1SeccompProfile { Type = "RuntimeDefault" },
                        },
                        Containers =
                        [
                            new V1Container
                            {
                                Name = "executor",
                                Image = options.NodeImage,
                                Ports = [new V1ContainerPort { ContainerPort = options.ContainerPort, Name = "http" }],
                                Env =
                                [
                                    new V1EnvVar { Name = "POLICYGRID_EXECUTOR_ID", Value = executorId },
                                    new V1EnvVar { Name = "APP_PORT", Value = options.ContainerPort.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                                    // The registry calls the node at its Service (plain HTTP, not through Dapr), job pods post their
                                    // results there and the kubelet probes it: it listens on the pod's address, not loopback.
                                    new V1EnvVar { Name = "PolicyGrid__Dapr__BindAddress", Value = "0.0.0.0" },
                                    .. Credentials(secured, executorId),
                                    // The root filesystem is read-only: unpacked bundles go to the emptyDir.
                                    new V1EnvVar { Name = "PolicyGrid__Runtime__Bundles__CacheDirectory", Value = "/tmp/policygrid-bundles" },
                                    new V1EnvVar { Name = "PolicyGrid__Jobs__Launcher", Value = "kubernetes" },
                                    new V1EnvVar { Name = "PolicyGrid__Jobs__NodeExecutorId", Value = executorId },
                                    new V1EnvVar { Name = "PolicyGrid__Jobs__Kubernetes__RunnerImage", Value = options.RunnerImage },
                                    new V1EnvVar { Name = "PolicyGrid__Jobs__Kubernetes__ResultCallbackUrl", Value = serviceUrl },
                                    new V1EnvVar
                                    {
                                        Name = "PolicyGrid__Jobs__Kubernetes__Namespace",
                                        ValueFrom = new V1EnvVarSource { FieldRef = new V1ObjectFieldSelector { FieldPath = "metadata.namespace" } },
                                    },
                                ],
                                ReadinessProbe = new V1Probe { HttpGet = new V1HTTPGetAction { Path = "/readyz", Port = "http" } },
                                LivenessProbe = new V1Probe { HttpGet = new V1HTTPGetAction { Path = "/healthz", Port = "http" } },
                                SecurityContext = new V1SecurityContext
                                {
                                    AllowPrivilegeEscalation = false,
                                    ReadOnlyRootFilesystem = true,
                                    Capabilities = new V1Capabilities { Drop = ["ALL"], Add = [.. WorkerIsolationCapabilities] },
                                },
                                VolumeMounts =
                                [
                                    new V1VolumeMount { MountPath = "/tmp", Name = "tmp" },
                                    new V1VolumeMount { MountPath = "/var/run/secrets/kubernetes.io/serviceaccount", Name = "kube-api-access", ReadOnlyProperty = true },
                                ],
                            },
                        ],
                        Volumes =
                        [
                            new V1Volume { Name = "tmp", EmptyDir = new V1EmptyDirVolumeSource() },
                            new V1Volume
                            {
                                Name = "kube-api-access",
                                Projected = new V1ProjectedVolumeSource
                                {
                                    DefaultMode = 0b100_000_000, // 0400
                                    Sources =
                                    [
                                        new V1VolumeProjection { ServiceAccountToken = new V1ServiceAccountTokenProjection { Path = "token", ExpirationSeconds = 3607 } },
                                        new V1VolumeProjection { ConfigMap = new V1ConfigMapProjection { Name = "kube-root-ca.crt", Items = [new V1KeyToPath { Key = "ca.crt", Path = "ca.crt" }] } },
                                        new V1VolumeProjection
                                        {
                                            DownwardAPI = new V1DownwardAPIProjection
                                            {
                                                Items = [new V1DownwardAPIVolumeFile { Path = "namespace", FieldRef = new V1ObjectFieldSelector { FieldPath = "metadata.namespace" } }],
                                            },
                                        },
                                    ],
                                },
                            },
                        ],
                    },
                },
            },
        };
        var service = new V1Service
        {
            ApiVersion = "v1", Kind = "Service", Metadata = Meta(),
            Spec = new V1ServiceSpec
            {
                Type = "ClusterIP",
                Selector = new Dictionary<string, string> { ["app.kubernetes.io/instance"] = name },
                Ports = [new V1ServicePort { Port = ServicePort, Name = "http", TargetPort = "http" }],
            },
        };
        return new ExecutorNodeManifests(serviceAccount, role, binding, deployment, service, secret);
    }

    /// <summary>
    /// What guards the node's address. An app API token would shut out the registry, which is not the node's sidecar: the
    /// node checks the registry's node token as an API token instead (from the Secret, never written into the Deployment).
    /// Type 3 job pods hold no API token: they post results with their per-job token and fetch their bundle by its hash,
    /// which <c>AnonymousBundleDownloads</c> leaves open. Without a registry token the node stays open, said here rather than silently.
    /// </summary>
    private static IEnumerable<V1EnvVar> Credentials(bool secured, string executorId) => secured
        ?
        [
            new V1EnvVar { Name = "PolicyGrid__Auth__Tokens__0__Name", Value = RegistryTokenName },
            new V1EnvVar
            {
                Name = "PolicyGrid__Auth__Tokens__0__Token",
                ValueFrom = new V1EnvVarSource { SecretKeyRef = new V1SecretKeySelector { Name = ApiTokenSecretName(executorId), Key = ApiTokenKey } },
            },
            new V1EnvVar { Name = "PolicyGrid__Auth__Tokens__0__Scopes__0", Value = "write" },
            new V1EnvVar { Name = "PolicyGrid__Auth__AnonymousBundleDownloads", Value = "true" },
        ]
        : [new V1EnvVar { Name = "PolicyGrid__Dapr__Insecure", Value = "true" }];
}
