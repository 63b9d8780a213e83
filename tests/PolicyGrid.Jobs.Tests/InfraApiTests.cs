using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using PolicyGrid.Kubernetes.Tests;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>create-infra / remove-infra over HTTP, through the real KubernetesClient, against the loopback API server.</summary>
public sealed class InfraApiTests : IAsyncLifetime
{
    private const string Token = "cluster-admin-token-7f3a";
    private readonly GridServer server = new() { PythonWorkers = 1 };
    private FakeKubernetesApi cluster = null!;
    private HttpClient client = null!;

    public async ValueTask InitializeAsync()
    {
        cluster = await FakeKubernetesApi.StartAsync();
        client = server.CreateClient();
        await server.StoreExecutorAsync("edge", "http://placeholder:1", new JsonObject { ["pool"] = "edge" });
    }

    public async ValueTask DisposeAsync()
    {
        await server.DisposeAsync();
        await cluster.DisposeAsync();
    }

    private JsonObject Kubeconfig(Action<JsonObject>? user = null, Action<JsonObject>? clusterEntry = null)
    {
        var userBody = new JsonObject { ["token"] = Token };
        user?.Invoke(userBody);
        var clusterBody = new JsonObject { ["server"] = cluster.Url };
        clusterEntry?.Invoke(clusterBody);
        return new JsonObject
        {
            ["apiVersion"] = "v1", ["kind"] = "Config", ["current-context"] = "prod",
            ["clusters"] = new JsonArray(new JsonObject { ["name"] = "c", ["cluster"] = clusterBody }),
            ["users"] = new JsonArray(new JsonObject { ["name"] = "u", ["user"] = userBody }),
            ["contexts"] = new JsonArray(new JsonObject { ["name"] = "prod", ["context"] = new JsonObject { ["cluster"] = "c", ["user"] = "u", ["namespace"] = "edge-ns" } }),
        };
    }

    private static string Body(JsonObject kubeconfig) => new JsonObject { ["cluster_config"] = kubeconfig.DeepClone() }.ToJsonString();

    [Fact]
    public async Task Create_infra_installs_the_node_and_points_the_executor_at_it()
    {
        var answer = await client.Post("/executor/edge/create-infra", Body(Kubeconfig()));

        answer.Status.ShouldBe(200, answer.Message);
        var data = answer.Data!;
        data["service_url"]!.GetValue<string>().ShouldBe("http://pg-executor-edge.edge-ns.svc.cluster.local:80");
        data["changes"]!.AsArray().Select(c => $"{c!["kind"]}:{c["action"]}").ShouldBe(
            ["ServiceAccount:created", "Role:created", "RoleBinding:created", "Deployment:created", "Service:created"]);
        data["executor"]!["executor_host_uri"]!.GetValue<string>().ShouldBe("http://pg-executor-edge.edge-ns.svc.cluster.local:80");
        (await server.Store.GetAsync(Collections.Executors, "edge"))!.Body["executor_host_uri"]!.GetValue<string>()
            .ShouldBe("http://pg-executor-edge.edge-ns.svc.cluster.local:80");
        cluster.Get("/apis/apps/v1/namespaces/edge-ns/deployments/pg-executor-edge").ShouldNotBeNull();
        cluster.Requests.ShouldAllBe(r => r.Authorization == $"Bearer {Token}");
        answer.Body!.ToJsonString().ShouldNotContain(Token);
        // This server has no node token: the node is open, and the answer says so and how to change it.
        data["warnings"]!.AsArray().ShouldHaveSingleItem()!.GetValue<string>().ShouldContain("PolicyGrid:Runtime:RemoteExecutors:Token");
    }

    [Fact]
    public async Task Create_infra_with_a_node_token_the_node_would_refuse_is_a_409_naming_the_setting_and_nothing_is_applied()
    {
        await using var registry = new GridServer { PythonWorkers = 1, Settings = { ["PolicyGrid:Runtime:RemoteExecutors:Token"] = "too-short" } };
        await registry.StoreExecutorAsync("edge", "http://placeholder:1", new JsonObject { ["pool"] = "edge" });

        var answer = await registry.CreateClient().Post("/executor/edge/create-infra", Body(Kubeconfig()));

        answer.Status.ShouldBe(409, answer.Message);
        answer.Message!.ShouldContain("PolicyGrid:Runtime:RemoteExecutors:Token");
        answer.Message.ShouldContain("16");
        answer.Body!.ToJsonString().ShouldNotContain("too-short");
        cluster.Requests.ShouldBeEmpty();
        (await registry.Store.GetAsync(Collections.Executors, "edge"))!.Body["executor_host_uri"]!.GetValue<string>().ShouldBe("http://placeholder:1");
    }

    [Fact]
    public async Task Create_infra_hands_the_node_the_registry_token_through_a_secret()
    {
        const string nodeToken = "registry-node-token-0123456789";
        await using var registry = new GridServer { PythonWorkers = 1, Settings = { ["PolicyGrid:Runtime:RemoteExecutors:Token"] = nodeToken } };
        await registry.StoreExecutorAsync("edge", "http://placeholder:1", new JsonObject { ["pool"] = "edge" });

        var answer = await registry.CreateClient().Post("/executor/edge/create-infra", Body(Kubeconfig()));

        answer.Status.ShouldBe(200, answer.Message);
        answer.Data!["warnings"]!.AsArray().ShouldBeEmpty();
        answer.Body!.ToJsonString().ShouldNotContain(nodeToken);
        cluster.Get("/api/v1/namespaces/edge-ns/secrets/pg-executor-edge-api-token")!["stringData"]!["token"]!.GetValue<string>().ShouldBe(nodeToken);
        cluster.Get("/apis/apps/v1/namespaces/edge-ns/deployments/pg-executor-edge")!.ToJsonString().ShouldNotContain(nodeToken);
    }

    [Fact]
    public async Task Create_infra_twice_replaces_and_the_kubeconfig_is_kept_nowhere()
    {
        (await client.Post("/executor/edge/create-infra", Body(Kubeconfig()))).Status.ShouldBe(200);
        var again = await client.Post("/executor/edge/create-infra", Body(Kubeconfig()));
        again.Status.ShouldBe(200);
        again.Data!["changes"]!.AsArray().ShouldAllBe(c => c!["action"]!.GetValue<string>() == "replaced");

        // The database and its write-ahead log, as they are on disk now. (The empty lock file the running server
        // holds exclusively cannot be opened by .NET meanwhile; it holds nothing.)
        foreach (var file in Directory.EnumerateFiles(server.DataDirectory, "*", SearchOption.AllDirectories)
                     .Where(f => Path.GetFileName(f) != PolicyGrid.Cli.Serve.DataDirectoryLock.FileName))
            Encoding.UTF8.GetString(await File.ReadAllBytesAsync(file, TestContext.Current.CancellationToken)).ShouldNotContain(Token, customMessage: file);
    }

    [Fact]
    public async Task Remove_infra_deletes_the_node_and_is_idempotent()
    {
        await client.Post("/executor/edge/create-infra", Body(Kubeconfig()));
        var removed = await client.Delete("/executor/edge/remove-infra", Body(Kubeconfig()));
        removed.Status.ShouldBe(200);
        // The open node had no token Secret.
        removed.Data!["changes"]!.AsArray().Select(c => $"{c!["kind"]}:{c["action"]}").ShouldBe(
            ["Service:deleted", "Deployment:deleted", "Secret:absent", "RoleBinding:deleted", "Role:deleted", "ServiceAccount:deleted"]);
        cluster.Paths.ShouldBeEmpty();

        var again = await client.Delete("/executor/edge/remove-infra", Body(Kubeconfig()));
        again.Status.ShouldBe(200);
        again.Data!["changes"]!.AsArray().ShouldAllBe(c => c!["action"]!.GetValue<string>() == "absent");
    }

    public static TheoryData<string, string> Refused => new()
    {
        { "exec", "users[0].user.exec" },
        { "auth-provider", "users[0].user.auth-provider" },
        { "client-certificate", "users[0].user.client-certificate" },
        { "client-key", "users[0].user.client-key" },
        { "tokenFile", "users[0].user.tokenFile" },
        { "certificate-authority", "clusters[0].cluster.certificate-authority" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public async Task A_kubeconfig_with_plugins_or_file_paths_is_a_400_and_nothing_is_applied(string field, string path)
    {
        var kubeconfig = field == "certificate-authority"
            ? Kubeconfig(clusterEntry: c => c[field] = "/etc/kubernetes/ca.crt")
            : Kubeconfig(user: u => u[field] = field switch
            {
                "exec" => new JsonObject { ["apiVersion"] = "client.authentication.k8s.io/v1", ["command"] = "/bin/sh", ["args"] = new JsonArray("-c", "id > /tmp/owned") },
                "auth-provider" => new JsonObject { ["name"] = "oidc", ["config"] = new JsonObject { ["cmd-path"] = "/usr/bin/helper" } },
                _ => "/root/.kube/secret",
            });

        var answer = await client.Post("/executor/edge/create-infra", Body(kubeconfig));

        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("validation_failed");
        answer.Message!.ShouldContain($"cluster_config.{path}");
        answer.Body!.ToJsonString().ShouldNotContain(Token);
        cluster.Requests.ShouldBeEmpty();
        File.Exists("/tmp/owned").ShouldBeFalse();
        (await server.Store.GetAsync(Collections.Executors, "edge"))!.Body["executor_host_uri"]!.GetValue<string>().ShouldBe("http://placeholder:1");
        (await client.Delete("/executor/edge/remove-infra", Body(kubeconfig))).Status.ShouldBe(400);
        cluster.Requests.ShouldBeEmpty();
    }

    [Theory]
    [InlineData("{}", "cluster_config")]
    [InlineData("""{"cluster_config":"apiVersion: v1"}""", "cluster_config")]
    public async Task A_missing_or_yaml_cluster_config_is_a_400(string body, string field)
    {
        var answer = await client.Post("/executor/edge/create-infra", body);
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain(field);
        cluster.Requests.ShouldBeEmpty();
    }

    [Fact]
    public async Task An_unknown_executor_is_a_404_and_nothing_is_applied()
    {
        var answer = await client.Post("/executor/ghost/create-infra", Body(Kubeconfig()));
        answer.Status.ShouldBe(404);
        cluster.Requests.ShouldBeEmpty();
    }

    [Fact]
    public async Task A_cluster_that_refuses_is_a_502_and_the_executor_is_unchanged()
    {
        cluster.FailNext("POST", "/roles", 403);
        var answer = await client.Post("/executor/edge/create-infra", Body(Kubeconfig()));
        answer.Status.ShouldBe(502);
        answer.Message!.ShouldContain("Role edge-ns/pg-executor-edge");
        (await server.Store.GetAsync(Collections.Executors, "edge"))!.Body["executor_host_uri"]!.GetValue<string>().ShouldBe("http://placeholder:1");
    }
}
