using Xunit;
using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using k8s;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Kubernetes.Tests;

/// <summary>
/// The generated manifests are compared with checked-in YAML, so any change to what lands in a
/// cluster shows up in review. Set UPDATE_GOLDEN=1 to rewrite the files after an intended change.
/// </summary>
public class ManifestGoldenTests
{
    public static JobLaunch SampleLaunch(string jobId = "3f2b8c1e-0000-4000-8000-000000000001") => new(
        jobId,
        new JsonObject { ["policy_rule_uri"] = "ip_allowlist:1.0-beta", ["name"] = "ip_allowlist", ["code"] = "https://bundles.example/ip.zip" },
        new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1") },
        new JsonObject { ["ip"] = "10.0.0.1" },
        new Dictionary<string, string> { ["pool"] = "batch" },
        TimeSpan.FromSeconds(90),
        new JobResources("500m", "256Mi"),
        "token-abc");

    /// <summary>When the sample Job is created (its pod's deadline counts from then).</summary>
    public static readonly DateTimeOffset CreatedAt = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    public static KubernetesJobOptions Options => new()
    {
        RunnerImage = "registry.example/policygrid/job-runner:1.0",
        ResultCallbackUrl = "http://pg-executor-gpu.policygrid.svc.cluster.local:80",
        TtlSecondsAfterFinished = 600,
    };

    [Fact]
    public void The_job_manifest_matches_its_golden_file()
    {
        var job = JobManifest.Build(SampleLaunch(), "policygrid", "token-abc", Options, CreatedAt);
        Golden("job.yaml", KubernetesYaml.Serialize(job));
    }

    [Fact]
    public void The_executor_node_manifests_match_their_golden_file()
    {
        var m = ExecutorNodeManifests.Build("gpu_pool.A", "team-a", new ExecutorNodeOptions { NodeImage = "registry.example/policygrid/policy-executor:1.0", RunnerImage = "registry.example/policygrid/job-runner:1.0" });
        Golden("executor-node.yaml", KubernetesYaml.SerializeAll([m.ServiceAccount, m.Role, m.RoleBinding, m.Deployment, m.Service]));
    }

    [Fact]
    public void The_executor_node_manifests_with_a_registry_token_match_their_golden_file()
    {
        var m = ExecutorNodeManifests.Build("gpu_pool.A", "team-a", new ExecutorNodeOptions { NodeImage = "registry.example/policygrid/policy-executor:1.0", RunnerImage = "registry.example/policygrid/job-runner:1.0" },
            registryToken: ExecutorNodeInstallerTests.NodeToken);
        m.ApiTokenSecret.ShouldNotBeNull();
        Golden("executor-node-with-token.yaml", KubernetesYaml.SerializeAll([m.ServiceAccount, m.Role, m.RoleBinding, m.ApiTokenSecret, m.Deployment, m.Service]));
    }

    [Fact]
    public void With_a_registry_token_the_node_requires_it_from_the_secret_and_is_not_insecure()
    {
        var m = ExecutorNodeManifests.Build("gpu", "team-a", new ExecutorNodeOptions(), registryToken: ExecutorNodeInstallerTests.NodeToken);

        m.ApiTokenSecret!.Metadata.NamespaceProperty.ShouldBe("team-a");
        m.ApiTokenSecret.Metadata.Labels.ShouldBe(m.Deployment.Metadata.Labels);
        m.ApiTokenSecret.StringData["token"].ShouldBe(ExecutorNodeInstallerTests.NodeToken);
        KubernetesYaml.Serialize(m.Deployment).ShouldNotContain(ExecutorNodeInstallerTests.NodeToken);
        var env = m.Deployment.Spec.Template.Spec.Containers.Single().Env;
        env.ShouldNotContain(e => e.Name == "PolicyGrid__Dapr__Insecure");
        var token = env.Single(e => e.Name == "PolicyGrid__Auth__Tokens__0__Token");
        token.Value.ShouldBeNull();
        token.ValueFrom.SecretKeyRef.Name.ShouldBe(m.ApiTokenSecret.Metadata.Name);
        token.ValueFrom.SecretKeyRef.Key.ShouldBe("token");
        env.Single(e => e.Name == "PolicyGrid__Auth__Tokens__0__Scopes__0").Value.ShouldBe("write");
        env.Single(e => e.Name == "PolicyGrid__Auth__AnonymousBundleDownloads").Value.ShouldBe("true");
    }

    [Fact]
    public void Without_a_registry_token_the_node_is_open_as_before()
    {
        var m = ExecutorNodeManifests.Build("gpu", "team-a", new ExecutorNodeOptions());

        m.ApiTokenSecret.ShouldBeNull();
        var env = m.Deployment.Spec.Template.Spec.Containers.Single().Env;
        env.Single(e => e.Name == "PolicyGrid__Dapr__Insecure").Value.ShouldBe("true");
        env.ShouldNotContain(e => e.Name.StartsWith("PolicyGrid__Auth__", StringComparison.Ordinal));
    }

    [Fact]
    public void A_job_pod_runs_once_unprivileged_without_an_api_token()
    {
        var job = JobManifest.Build(SampleLaunch(), "policygrid", "token-abc", Options, CreatedAt);
        job.Spec.BackoffLimit.ShouldBe(0);
        job.Spec.ActiveDeadlineSeconds.ShouldBe(90 + Options.StartupAllowanceSeconds);
        job.Spec.TtlSecondsAfterFinished.ShouldBe(600);
        var pod = job.Spec.Template.Spec;
        pod.RestartPolicy.ShouldBe("Never");
        pod.AutomountServiceAccountToken.ShouldBe(false);
        pod.SecurityContext.RunAsNonRoot.ShouldBe(true);
        pod.NodeSelector["pool"].ShouldBe("batch");
        var runner = pod.Containers.Single();
        runner.SecurityContext.ReadOnlyRootFilesystem.ShouldBe(true);
        runner.SecurityContext.AllowPrivilegeEscalation.ShouldBe(false);
        runner.Resources.Limits["cpu"].ToString().ShouldBe("500m");
        runner.Resources.Requests["memory"].ToString().ShouldBe("256Mi");
        runner.Env.Single(e => e.Name == "POLICYGRID_RESULT_URL").Value
            .ShouldBe("http://pg-executor-gpu.policygrid.svc.cluster.local:80/jobs/3f2b8c1e-0000-4000-8000-000000000001/result");
        var spec = JsonNode.Parse(runner.Env.Single(e => e.Name == "POLICYGRID_JOB_SPEC").Value)!;
        spec["inputs"]!["ip"]!.GetValue<string>().ShouldBe("10.0.0.1");
        spec["policy"]!["policy_rule_uri"]!.GetValue<string>().ShouldBe("ip_allowlist:1.0-beta");
        // The runner tries to deliver its result until shortly before Kubernetes stops its pod, so it is told when that is.
        runner.Env.Single(e => e.Name == JobManifest.DeadlineVariable).Value.ShouldBe("2026-03-01T12:03:30.000Z");
    }

    [Fact]
    public void Code_held_by_the_node_is_fetched_from_the_nodes_bundle_url()
    {
        var launch = SampleLaunch() with { Policy = new JsonObject { ["policy_rule_uri"] = "p:1-a", ["code"] = "bundle://sha256/" + new string('a', 64) } };
        var env = JobManifest.Build(launch, "ns", "t", Options, CreatedAt).Spec.Template.Spec.Containers.Single().Env;
        var spec = JsonNode.Parse(env.Single(e => e.Name == "POLICYGRID_JOB_SPEC").Value)!;
        spec["policy"]!["code"]!.GetValue<string>().ShouldBe($"{Options.ResultCallbackUrl}/bundles/sha256/{new string('a', 64)}");
        env.ShouldContain(e => e.Name == "PolicyGrid__Runtime__Bundles__AllowPrivateNetworks" && e.Value == "true");
    }

    [Fact]
    public void The_node_role_allows_only_jobs_and_reading_pods_in_its_namespace()
    {
        var m = ExecutorNodeManifests.Build("gpu", "team-a", new ExecutorNodeOptions());
        m.Role.Metadata.NamespaceProperty.ShouldBe("team-a");
        m.Role.Rules.SelectMany(r => r.Resources).ShouldBe(["jobs", "pods", "pods/log"], ignoreOrder: true);
        m.Role.Rules.Where(r => r.Resources.Contains("pods")).SelectMany(r => r.Verbs).ShouldBe(["get", "list"], ignoreOrder: true);
        m.Deployment.Spec.Template.Metadata.Annotations["dapr.io/enabled"].ShouldBe("true");
        m.Deployment.Spec.Template.Spec.ServiceAccountName.ShouldBe(m.ServiceAccount.Metadata.Name);
    }

    [Theory]
    [InlineData("gpu", "pg-executor-gpu")]
    [InlineData("GPU_pool.a", "pg-executor-gpu-pool-a-")]
    public void Executor_ids_fold_into_valid_distinct_names(string id, string prefix)
    {
        var name = KubernetesNames.ExecutorNode(id);
        name.ShouldStartWith(prefix);
        name.Length.ShouldBeLessThanOrEqualTo(63);
        name.ShouldMatch("^[a-z]([-a-z0-9]*[a-z0-9])?$");
        KubernetesNames.ExecutorNode(new string('x', 200)).Length.ShouldBeLessThanOrEqualTo(63);
        KubernetesNames.ExecutorNode("gpu.pool").ShouldNotBe(KubernetesNames.ExecutorNode("gpu_pool"));
    }

    private static void Golden(string file, string actual, [CallerFilePath] string source = "")
    {
        var path = Path.Combine(Path.GetDirectoryName(source)!, "Golden", file);
        actual = actual.ReplaceLineEndings("\n");
        if (Environment.GetEnvironmentVariable("UPDATE_GOLDEN") == "1" || !File.Exists(path))
        {
            File.WriteAllText(path, actual);
            if (Environment.GetEnvironmentVariable("UPDATE_GOLDEN") != "1")
                Assert.Fail($"golden file {file} did not exist and was written; review it and run again");
        }
        actual.ShouldBe(File.ReadAllText(path).ReplaceLineEndings("\n"));
    }
}
