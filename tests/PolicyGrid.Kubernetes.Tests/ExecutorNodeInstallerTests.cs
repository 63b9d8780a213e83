using Xunit;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Errors;
using Shouldly;

namespace PolicyGrid.Kubernetes.Tests;

/// <summary>create-infra / remove-infra through the real KubernetesClient against the loopback API server.</summary>
public class ExecutorNodeInstallerTests : IAsyncLifetime
{
    public const string NodeToken = "registry-node-token-0123456789";
    private const string SecretPath = "/api/v1/namespaces/team-a/secrets/pg-executor-gpu-api-token";
    private const string DeploymentPath = "/apis/apps/v1/namespaces/team-a/deployments/pg-executor-gpu";

    private FakeKubernetesApi api = null!;
    private readonly ExecutorNodeInstaller installer = Installer();
    private readonly ExecutorNodeInstaller secured = Installer(("PolicyGrid:Runtime:RemoteExecutors:Token", NodeToken));

    /// <summary>An installer on a registry with these settings.</summary>
    public static ExecutorNodeInstaller Installer(params (string Key, string Value)[] settings) => new(
        Options.Create(new ExecutorNodeOptions { NodeImage = "node:1" }),
        new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Key, (string?)s.Value))).Build(),
        NullLogger<ExecutorNodeInstaller>.Instance);

    public async ValueTask InitializeAsync() => api = await FakeKubernetesApi.StartAsync();

    public async ValueTask DisposeAsync() => await api.DisposeAsync();

    private JsonObject Kubeconfig(Action<JsonObject>? user = null) => KubeconfigGuardTests.Kubeconfig(server: api.Url, user: user);

    [Fact]
    public async Task Install_creates_the_node_objects_in_the_contexts_namespace_and_answers_the_service_url()
    {
        var report = await installer.InstallAsync("gpu", Kubeconfig(), CancellationToken.None);

        report.Namespace.ShouldBe("team-a");
        report.ServiceUrl.ShouldBe("http://pg-executor-gpu.team-a.svc.cluster.local:80");
        report.Changes.Select(c => (c.Kind, c.Action)).ShouldBe(
            [("ServiceAccount", "created"), ("Role", "created"), ("RoleBinding", "created"), ("Deployment", "created"), ("Service", "created")]);
        api.Get("/apis/apps/v1/namespaces/team-a/deployments/pg-executor-gpu")!["spec"]!["template"]!["metadata"]!["annotations"]!["dapr.io/app-id"]!
            .GetValue<string>().ShouldBe("pg-executor-gpu");
        api.Get("/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles/pg-executor-gpu").ShouldNotBeNull();
        api.Get("/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/pg-executor-gpu").ShouldNotBeNull();
        api.Get("/api/v1/namespaces/team-a/serviceaccounts/pg-executor-gpu").ShouldNotBeNull();
        api.Get("/api/v1/namespaces/team-a/services/pg-executor-gpu").ShouldNotBeNull();
        api.Requests.ShouldAllBe(r => r.Authorization == $"Bearer {KubeconfigGuardTests.Secret}");
    }

    [Fact]
    public async Task Installing_twice_replaces_what_is_there()
    {
        await installer.InstallAsync("gpu", Kubeconfig(), CancellationToken.None);
        var service = api.Get("/api/v1/namespaces/team-a/services/pg-executor-gpu")!;
        service["spec"]!["clusterIP"] = "10.96.0.12";

        var again = await installer.InstallAsync("gpu", Kubeconfig(), CancellationToken.None);

        again.Changes.ShouldAllBe(c => c.Action == "replaced");
        api.Requests.Count(r => r.Method == "PUT").ShouldBe(5);
        api.Get("/api/v1/namespaces/team-a/services/pg-executor-gpu")!["spec"]!["clusterIP"]!.GetValue<string>().ShouldBe("10.96.0.12");
    }

    [Fact]
    public async Task Remove_deletes_everything_and_a_second_remove_finds_it_absent()
    {
        await secured.InstallAsync("gpu", Kubeconfig(), CancellationToken.None);

        var removed = await installer.RemoveAsync("gpu", Kubeconfig(), CancellationToken.None);
        removed.Changes.ShouldAllBe(c => c.Action == "deleted");
        api.Paths.ShouldBeEmpty();

        var again = await installer.RemoveAsync("gpu", Kubeconfig(), CancellationToken.None);
        again.Changes.Count.ShouldBe(6);
        again.Changes.ShouldAllBe(c => c.Action == "absent");
    }

    [Fact]
    public async Task An_install_without_a_registry_token_leaves_the_node_open_and_says_how_to_close_it()
    {
        var report = await installer.InstallAsync("gpu", Kubeconfig(), CancellationToken.None);

        report.Warnings.ShouldHaveSingleItem().ShouldContain("the node is open");
        report.Warnings[0].ShouldContain("PolicyGrid:Runtime:RemoteExecutors:Token");
        api.Get(SecretPath).ShouldBeNull();
        Env(api.Get(DeploymentPath)!).ShouldContainKey("PolicyGrid__Dapr__Insecure");
    }

    [Fact]
    public async Task With_a_registry_token_the_node_gets_it_from_a_secret_created_before_its_deployment()
    {
        var report = await secured.InstallAsync("gpu", Kubeconfig(), CancellationToken.None);

        report.Warnings.ShouldBeEmpty();
        report.Changes.Select(c => (c.Kind, c.Action)).ShouldBe(
            [("ServiceAccount", "created"), ("Role", "created"), ("RoleBinding", "created"), ("Secret", "created"), ("Deployment", "created"), ("Service", "created")]);
        var secret = api.Get(SecretPath)!;
        secret["type"]!.GetValue<string>().ShouldBe("Opaque");
        secret["stringData"]!["token"]!.GetValue<string>().ShouldBe(NodeToken);
        secret["metadata"]!["labels"]!["app.kubernetes.io/instance"]!.GetValue<string>().ShouldBe("pg-executor-gpu");

        var deployment = api.Get(DeploymentPath)!;
        deployment.ToJsonString().ShouldNotContain(NodeToken);
        TokenVersion(deployment).ShouldBe(secret["metadata"]!["resourceVersion"]!.GetValue<string>());
        var env = Env(deployment);
        env.ShouldNotContainKey("PolicyGrid__Dapr__Insecure");
        env["PolicyGrid__Auth__Tokens__0__Token"]!["valueFrom"]!["secretKeyRef"]!["name"]!.GetValue<string>().ShouldBe("pg-executor-gpu-api-token");
        env["PolicyGrid__Auth__Tokens__0__Scopes__0"]!["value"]!.GetValue<string>().ShouldBe("write");
        env["PolicyGrid__Auth__AnonymousBundleDownloads"]!["value"]!.GetValue<string>().ShouldBe("true");
    }

    [Fact]
    public async Task Installing_again_replaces_the_secret_with_the_current_token_and_an_open_install_removes_it()
    {
        await secured.InstallAsync("gpu", Kubeconfig(), CancellationToken.None);
        const string rotated = "rotated-node-token-9876543210";

        var again = await Installer(("PolicyGrid:Runtime:RemoteExecutors:Token", rotated)).InstallAsync("gpu", Kubeconfig(), CancellationToken.None);

        again.Changes.Single(c => c.Kind == "Secret").Action.ShouldBe("replaced");
        api.Get(SecretPath)!["stringData"]!["token"]!.GetValue<string>().ShouldBe(rotated);
        // The pods read the token at start: the pod template names the Secret's version, so a changed Secret rolls them.
        TokenVersion(api.Get(DeploymentPath)!).ShouldBe(api.Get(SecretPath)!["metadata"]!["resourceVersion"]!.GetValue<string>());

        var open = await installer.InstallAsync("gpu", Kubeconfig(), CancellationToken.None);
        open.Changes.Single(c => c.Kind == "Secret").Action.ShouldBe("deleted");
        api.Get(SecretPath).ShouldBeNull();
    }

    [Theory]
    [InlineData("short-token")]
    [InlineData(" padded-node-token-0123456789")]
    public async Task A_registry_token_the_node_would_refuse_is_a_409_naming_the_setting_and_nothing_is_applied(string token)
    {
        var e = await Should.ThrowAsync<PolicyGridException>(() =>
            Installer(("PolicyGrid:Runtime:RemoteExecutors:Token", token)).InstallAsync("gpu", Kubeconfig(), CancellationToken.None));

        e.Status.ShouldBe(409);
        e.Message.ShouldContain("PolicyGrid:Runtime:RemoteExecutors:Token");
        e.Message.ShouldNotContain(token.Trim());
        api.Requests.ShouldBeEmpty();
    }

    [Fact]
    public async Task The_node_gets_the_token_only_when_token_nodes_lists_it()
    {
        var unlisted = await Installer(("PolicyGrid:Runtime:RemoteExecutors:Token", NodeToken),
            ("PolicyGrid:Runtime:RemoteExecutors:TokenNodes:0", "http://edge.example:8080")).InstallAsync("gpu", Kubeconfig(), CancellationToken.None);
        unlisted.Warnings.ShouldHaveSingleItem().ShouldContain("TokenNodes");
        api.Get(SecretPath).ShouldBeNull();

        var listed = await Installer(("PolicyGrid:Runtime:RemoteExecutors:Token", NodeToken),
            ("PolicyGrid:Runtime:RemoteExecutors:TokenNodes:0", unlisted.ServiceUrl)).InstallAsync("gpu", Kubeconfig(), CancellationToken.None);
        listed.Warnings.ShouldBeEmpty();
        api.Get(SecretPath)!["stringData"]!["token"]!.GetValue<string>().ShouldBe(NodeToken);
    }

    private static string TokenVersion(JsonObject deployment) =>
        deployment["spec"]!["template"]!["metadata"]!["annotations"]![ExecutorNodeManifests.ApiTokenVersionAnnotation]!.GetValue<string>();

    private static Dictionary<string, JsonNode> Env(JsonObject deployment) =>
        deployment["spec"]!["template"]!["spec"]!["containers"]![0]!["env"]!.AsArray()
            .ToDictionary(e => e!["name"]!.GetValue<string>(), e => e!);

    [Theory]
    [InlineData("exec")]
    [InlineData("auth-provider")]
    [InlineData("client-certificate")]
    [InlineData("tokenFile")]
    public async Task A_refused_kubeconfig_contacts_nothing(string field)
    {
        var e = await Should.ThrowAsync<PolicyGridException>(() =>
            installer.InstallAsync("gpu", Kubeconfig(u => u[field] = field == "exec" ? new JsonObject { ["command"] = "sh" } : "/etc/x"), CancellationToken.None));
        e.Status.ShouldBe(400);
        e.Message.ShouldContain(field);
        api.Requests.ShouldBeEmpty();
    }

    [Fact]
    public async Task A_cluster_that_refuses_is_a_502_naming_the_object()
    {
        api.FailNext("POST", "/deployments", 403);
        var e = await Should.ThrowAsync<PolicyGridException>(() => installer.InstallAsync("gpu", Kubeconfig(), CancellationToken.None));
        e.Status.ShouldBe(502);
        e.Code.ShouldBe("backend_error");
        e.Message.ShouldContain("Deployment team-a/pg-executor-gpu");
        e.Message.ShouldNotContain(KubeconfigGuardTests.Secret);
    }

    [Fact]
    public async Task An_unreachable_cluster_is_a_503()
    {
        var url = api.Url;
        await api.DisposeAsync();
        var e = await Should.ThrowAsync<PolicyGridException>(() =>
            installer.InstallAsync("gpu", KubeconfigGuardTests.Kubeconfig(server: url), CancellationToken.None));
        e.Status.ShouldBe(503);
        api = await FakeKubernetesApi.StartAsync();
    }
}
