using Xunit;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Errors;
using Shouldly;

namespace PolicyGrid.Kubernetes.Tests;

/// <summary>create-infra / remove-infra through the real KubernetesClient against the loopback API server.</summary>
public class ExecutorNodeInstallerTests : IAsyncLifetime
{
    private FakeKubernetesApi api = null!;
    private readonly ExecutorNodeInstaller installer = new(Options.Create(new ExecutorNodeOptions { NodeImage = "node:1" }), NullLogger<ExecutorNodeInstaller>.Instance);

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
        await installer.InstallAsync("gpu", Kubeconfig(), CancellationToken.None);

        var removed = await installer.RemoveAsync("gpu", Kubeconfig(), CancellationToken.None);
        removed.Changes.ShouldAllBe(c => c.Action == "deleted");
        api.Paths.ShouldBeEmpty();

        var again = await installer.RemoveAsync("gpu", Kubeconfig(), CancellationToken.None);
        again.Changes.Count.ShouldBe(5);
        again.Changes.ShouldAllBe(c => c.Action == "absent");
    }

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
