using k8s.Models;

namespace PolicyGrid.Kubernetes;

/// <summary>
/// The objects create-infra puts into a cluster for one executor node: a ServiceAccount whose Role
/// allows only Jobs (and reading their pods' logs) in the node's own namespace, the Deployment
/// (a Dapr app), and a ClusterIP Service that the registry reaches it through.
/// </summary>
public sealed record ExecutorNodeManifests(
    V1ServiceAccount ServiceAccount,
    V1Role Role,
    V1RoleBinding RoleBinding,
    V1Deployment Deployment,
    V1Service Service)
{
    public const int ServicePort = 80;

    public static string ServiceUrl(string executorId, string @namespace) =>
        $"http://{KubernetesNames.ExecutorNode(executorId)}.{@namespace}.svc.cluster.local:{ServicePort}";

    public static ExecutorNodeManifests Build(string executorId, string @namespace, ExecutorNodeOptions options)
    {
        var name = KubernetesNames.ExecutorNode(executorId);
        var labels = new Dictionary<string, string>
        {
            ["app.kubernetes.io/name"] = "policy-executor",
            ["app.kubernetes.io/instance"] = name,
            ["app.kubernetes.io/managed-by"] = KubernetesNames.ManagedBy,
        };
        V1ObjectMeta Meta() => new() { Name = name, NamespaceProperty = @namespace, Labels = new Dictionary<string, string>(labels) };

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
                        },
                    },
                    Spec = new V1PodSpec
                    {
                        ServiceAccountName = name,
                        AutomountServiceAccountToken = true, // the node launches Jobs with this account
                        SecurityContext = new V1PodSecurityContext
                        {
                            RunAsNonRoot = true,
                            RunAsUser = 1654,
                            RunAsGroup = 1654,
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
                                    Capabilities = new V1Capabilities { Drop = ["ALL"] },
                                },
                                VolumeMounts = [new V1VolumeMount { MountPath = "/tmp", Name = "tmp" }],
                            },
                        ],
                        Volumes = [new V1Volume { Name = "tmp", EmptyDir = new V1EmptyDirVolumeSource() }],
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
        return new ExecutorNodeManifests(serviceAccount, role, binding, deployment, service);
    }
}
