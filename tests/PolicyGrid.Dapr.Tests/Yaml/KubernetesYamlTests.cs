using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Shouldly;
using static PolicyGrid.Dapr.Tests.Yaml.RepoYaml;

namespace PolicyGrid.Dapr.Tests.Yaml;

/// <summary>deploy/: production components, Deployments with Dapr annotations, kustomize wiring, Dockerfiles.</summary>
public sealed partial class KubernetesYamlTests
{
    private static readonly List<(string File, JsonObject Doc)> Components = LoadFolder("deploy/base/components").ToList();
    private static readonly List<(string File, JsonObject Doc)> Apps = LoadFolder("deploy/base/apps").ToList();

    private static JsonObject Component(string name) => Components.Single(c => Text(c.Doc["metadata"]!["name"]) == name).Doc;

    private static IEnumerable<JsonObject> MetadataItems(JsonObject component) =>
        component["spec"]!["metadata"]!.AsArray().Select(m => m!.AsObject());

    private static IEnumerable<JsonObject> OfKind(string kind) => Apps.Where(a => Text(a.Doc["kind"]) == kind).Select(a => a.Doc);

    private static string Port(string appId) => DaprNames.Ports.For(appId).ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// How large a gRPC message daprd must take for a bundle upload of Limits:MaxBundleBytes: the binding carries it base64.
    /// daprd's limit (dapr.io/max-body-size, default 4Mi) refused every bundle over ~3 MiB on its way to the bucket.
    /// </summary>
    public static long BundleMessageBytes => (new PolicyGrid.Api.Envelope.ApiLimits().MaxBundleBytes + 2) / 3 * 4 + 1024 * 1024;

    /// <summary>A Kubernetes resource quantity in bytes (the suffixes daprd's max-body-size takes).</summary>
    public static long Quantity(string text)
    {
        foreach (var (suffix, factor) in new[] { ("Ki", 1L << 10), ("Mi", 1L << 20), ("Gi", 1L << 30) })
            if (text.EndsWith(suffix, StringComparison.Ordinal)) return long.Parse(text[..^2], CultureInfo.InvariantCulture) * factor;
        return long.Parse(text, CultureInfo.InvariantCulture);
    }

    [Fact]
    public void Every_sidecar_that_moves_bundles_takes_a_message_as_large_as_the_largest_upload()
    {
        var bundleApps = MetadataScopes(Component(DaprNames.Components.Bundles)).Except([DaprNames.Apps.Graphs]).ToList();
        bundleApps.ShouldBe([DaprNames.Apps.Registry, DaprNames.Apps.Executor, DaprNames.Apps.Functions], ignoreOrder: true);
        foreach (var deployment in OfKind("Deployment"))
        {
            var annotations = deployment["spec"]!["template"]!["metadata"]!["annotations"]!.AsObject();
            var appId = Text(annotations["dapr.io/app-id"]);
            if (!bundleApps.Contains(appId)) continue;
            Quantity(Text(annotations["dapr.io/max-body-size"])).ShouldBeGreaterThanOrEqualTo(BundleMessageBytes, appId);
        }
    }

    [Fact]
    public void The_graphs_sidecar_takes_a_workflow_message_holding_several_policy_answers()
    {
        // Each node's input (its parents' answers) and output cross daprd's workflow stream as one gRPC message; a policy
        // may answer up to Pool:MaxResultBytes. At daprd's default (4Mi) a graph whose node answered 5 MB failed on
        // Dapr while serve ran it.
        var graphs = OfKind("Deployment").Single(d => Text(d["metadata"]!["name"]) == DaprNames.Apps.Graphs);
        var annotations = graphs["spec"]!["template"]!["metadata"]!["annotations"]!.AsObject();
        Quantity(Text(annotations["dapr.io/max-body-size"])).ShouldBeGreaterThanOrEqualTo(4L * new PolicyGrid.Runtime.Hosting.WorkerPoolOptions().MaxResultBytes);
    }

    private static IEnumerable<string> MetadataScopes(JsonObject component) =>
        component["scopes"]!.AsArray().Select(s => Text(s));

    [Fact]
    public void Production_components_use_mongo_redis_s3()
    {
        Components.Select(c => Text(c.Doc["metadata"]!["name"])).ShouldBe(DaprNames.Components.All, ignoreOrder: true);
        Text(Component(DaprNames.Components.DocumentStore)["spec"]!["type"]).ShouldBe("state.mongodb");
        Text(Component(DaprNames.Components.CacheStore)["spec"]!["type"]).ShouldBe("state.redis");
        Text(Component(DaprNames.Components.ActorStore)["spec"]!["type"]).ShouldBe("state.redis");
        Text(Component(DaprNames.Components.PubSub)["spec"]!["type"]).ShouldStartWith("pubsub.");
        Text(Component(DaprNames.Components.Bundles)["spec"]!["type"]).ShouldBe("bindings.aws.s3");
        MetadataItems(Component(DaprNames.Components.ActorStore)).ShouldContain(m => Text(m["name"]) == "actorStateStore" && Text(m["value"]) == "true");
        MetadataItems(Component(DaprNames.Components.CacheStore)).ShouldContain(m => Text(m["name"]) == "ttlInSeconds");
        MetadataItems(Component(DaprNames.Components.Bundles)).ShouldContain(m => Text(m["name"]) == "decodeBase64" && Text(m["value"]) == "true");
    }

    [GeneratedRegex("password|secret|accesskey|token|username|host|connectionstring", RegexOptions.IgnoreCase)]
    private static partial Regex Sensitive();

    [Fact]
    public void No_credential_is_written_inline_in_any_production_resource()
    {
        var everywhere = Components.Concat(LoadFolder("deploy/overlays/dev")).Where(c => Text(c.Doc["kind"]) == "Component").ToList();
        everywhere.ShouldNotBeEmpty();
        foreach (var (file, component) in everywhere)
        {
            foreach (var item in MetadataItems(component).Where(m => Sensitive().IsMatch(Text(m["name"]))))
            {
                item.ContainsKey("value").ShouldBeFalse($"{file}: {Text(item["name"])} must come from the secret store, not a value");
                Text(item["secretKeyRef"]!["name"]).ShouldBe(DaprNames.Components.SecretStore, file);
            }
        }
    }

    [Fact]
    public void Secrets_are_resolved_by_the_dapr_operator_so_sidecars_need_no_kubernetes_api_token()
    {
        // The pods mount no Kubernetes API token. A component naming a secret store of its own (auth.secretStore other
        // than "kubernetes") is resolved by daprd through that store, which cannot start without a token, and daprd's
        // built-in Kubernetes secret store cannot either: daprd crash-loops. With no auth.secretStore the operator
        // resolves secretKeyRefs before daprd sees the component; the annotation turns the built-in store off.
        var everywhere = Components.Concat(LoadFolder("deploy/overlays/dev")).Where(c => Text(c.Doc["kind"]) == "Component").ToList();
        foreach (var (file, component) in everywhere)
        {
            Text(component["spec"]!["type"]).StartsWith("secretstores.", StringComparison.Ordinal).ShouldBeFalse(file);
            var store = Text(component["auth"]?["secretStore"]);
            (store is "" or "kubernetes").ShouldBeTrue($"{file}: auth.secretStore '{store}' would be resolved by daprd, which has no Kubernetes API token");
        }
        foreach (var deployment in OfKind("Deployment"))
        {
            var appId = Text(deployment["metadata"]!["name"]);
            var template = deployment["spec"]!["template"]!;
            Text(template["spec"]!["automountServiceAccountToken"]).ShouldBe("false", appId);
            Text(template["metadata"]!["annotations"]!["dapr.io/disable-builtin-k8s-secret-store"]).ShouldBe("true", appId);
        }
    }

    [Fact]
    public void Every_app_is_a_dapr_enabled_deployment_with_its_id_port_and_configuration()
    {
        var deployments = OfKind("Deployment").ToList();
        deployments.Select(d => Text(d["metadata"]!["name"])).ShouldBe(DaprNames.Apps.All, ignoreOrder: true);
        foreach (var deployment in deployments)
        {
            var template = deployment["spec"]!["template"]!;
            var annotations = template["metadata"]!["annotations"]!.AsObject();
            var appId = Text(annotations["dapr.io/app-id"]);
            appId.ShouldBe(Text(deployment["metadata"]!["name"]));
            Text(annotations["dapr.io/enabled"]).ShouldBe("true", appId);
            Text(annotations["dapr.io/app-port"]).ShouldBe(Port(appId), appId);
            Text(annotations["dapr.io/config"]).ShouldBe(DaprNames.Configuration, appId);
            Text(annotations["dapr.io/app-health-check-path"]).ShouldBe("/healthz", appId);

            var container = template["spec"]!["containers"]![0]!;
            Text(container["ports"]![0]!["containerPort"]).ShouldBe(Port(appId), appId);
            var env = container["env"]!.AsArray().ToDictionary(e => Text(e!["name"]), e => Text(e!["value"]));
            env["APP_PORT"].ShouldBe(Port(appId), appId);
            // Mongo has the state query API; the apps must use it in production.
            env["PolicyGrid__Dapr__DocumentQueries"].ShouldBe(nameof(DocumentQueryMode.QueryApi), appId);
            Text(container["securityContext"]!["allowPrivilegeEscalation"]).ShouldBe("false", appId);
            // Only daprd's own app may use the sidecar: nothing else in the pod (a policy worker) holds the token.
            Text(annotations["dapr.io/api-token-secret"]).ShouldBe("policygrid-dapr-api-token", appId);
        }
    }

    // Dapr 1.18's defaults for what the manifests leave unset.
    private const int DaprGracefulShutdownSeconds = 5, DaprAppHealthProbeInterval = 5, DaprAppHealthThreshold = 3;

    /// <summary>
    /// On a rollout or a scale-down the kubelet sends SIGTERM to the app and daprd at once. The app gives its calls in
    /// flight its host's shutdown timeout and records each decision through daprd, so daprd must keep its APIs up that
    /// long (block-shutdown-duration), the block must not end sooner because the app, which stops taking connections at
    /// SIGTERM, is judged unhealthy, and SIGKILL must not land before daprd's own graceful shutdown. An actor host keeps
    /// serving instead (its preStop holds its SIGTERM back) until daprd has moved its actors and drained their calls.
    /// None of this was set: daprd stopped within 5 s, cutting longer calls' state and decision writes.
    /// </summary>
    [Fact]
    public void Every_app_keeps_its_sidecar_and_its_pod_while_it_finishes_its_calls()
    {
        var margin = TimeSpan.FromSeconds(5);
        foreach (var deployment in OfKind("Deployment"))
        {
            var appId = Text(deployment["metadata"]!["name"]);
            var template = deployment["spec"]!["template"]!;
            var annotations = template["metadata"]!["annotations"]!.AsObject();
            var container = template["spec"]!["containers"]![0]!;
            var env = container["env"]!.AsArray().ToDictionary(e => Text(e!["name"]), e => Text(e!["value"]));
            env.ShouldContainKey("DOTNET_SHUTDOWNTIMEOUTSECONDS", $"{appId}: the time the app gives calls in flight, which the rest is sized from");
            var appStop = TimeSpan.FromSeconds(int.Parse(env["DOTNET_SHUTDOWNTIMEOUTSECONDS"], CultureInfo.InvariantCulture));
            annotations.ShouldContainKey("dapr.io/block-shutdown-duration", $"{appId}: daprd would stop within {DaprGracefulShutdownSeconds} s of SIGTERM");
            var block = ResiliencyChecks.GoDuration(Text(annotations["dapr.io/block-shutdown-duration"]));
            var graceful = TimeSpan.FromSeconds(Seconds(annotations, "dapr.io/graceful-shutdown-seconds", DaprGracefulShutdownSeconds));
            var podGrace = TimeSpan.FromSeconds(int.Parse(Text(template["spec"]!["terminationGracePeriodSeconds"]) is { Length: > 0 } g ? g : "30", CultureInfo.InvariantCulture));
            var preStop = container["lifecycle"]?["preStop"]?["exec"]?["command"]?.AsArray().Select(Text).ToArray();

            block.ShouldBeGreaterThanOrEqualTo(appStop + margin, $"{appId}: daprd's APIs must outlast the app's own stop and its last writes");
            if (appId == DaprNames.Apps.Functions)
            {
                // The actor host: while daprd blocks, the actors placed on this pod are still called here.
                preStop.ShouldNotBeNull($"{appId}: the app stops taking calls at SIGTERM while daprd still sends it its actors' calls");
                preStop![0].ShouldBe("sleep", appId);
                var held = TimeSpan.FromSeconds(int.Parse(preStop[1], CultureInfo.InvariantCulture));
                held.ShouldBeGreaterThanOrEqualTo(block + graceful, $"{appId}: the app must outlive daprd's block and the drain of its actors' calls");
                podGrace.ShouldBeGreaterThanOrEqualTo(held + margin, $"{appId}: SIGKILL would land while the app stops");
            }
            else
            {
                preStop.ShouldBeNull(appId);
                var interval = Seconds(annotations, "dapr.io/app-health-probe-interval", DaprAppHealthProbeInterval);
                var threshold = Seconds(annotations, "dapr.io/app-health-threshold", DaprAppHealthThreshold);
                // The first failed probe may come right at SIGTERM: unhealthy after threshold - 1 more intervals.
                TimeSpan.FromSeconds((threshold - 1) * interval).ShouldBeGreaterThanOrEqualTo(block,
                    $"{appId}: judged unhealthy once it stops taking connections, which ends daprd's block early");
                podGrace.ShouldBeGreaterThanOrEqualTo(block + graceful + margin, $"{appId}: SIGKILL would land while daprd drains its calls");
            }
        }
    }

    private static int Seconds(JsonObject annotations, string name, int unset) =>
        annotations[name] is { } value ? int.Parse(Text(value), CultureInfo.InvariantCulture) : unset;

    [Fact]
    public void Every_app_holds_the_api_token_its_sidecar_requires()
    {
        // The injector puts the dapr.io/api-token-secret value in daprd's environment only (Dapr 1.18's sidecar patcher
        // gives the app container DAPR_HTTP_PORT, DAPR_GRPC_PORT and APP_PROTOCOL, nothing more): an app that does not
        // read the secret itself gets 401 from its own sidecar on every state, pub/sub, invocation, actor and workflow call.
        foreach (var deployment in OfKind("Deployment"))
        {
            var appId = Text(deployment["metadata"]!["name"]);
            var template = deployment["spec"]!["template"]!;
            var secret = Text(template["metadata"]!["annotations"]!["dapr.io/api-token-secret"]);
            secret.ShouldNotBeNullOrEmpty(appId);
            var env = template["spec"]!["containers"]![0]!["env"]!.AsArray().Select(e => e!.AsObject()).ToDictionary(e => Text(e["name"]));
            env.ShouldContainKey("DAPR_API_TOKEN", $"{appId}: its sidecar requires the token of secret '{secret}', which the injector does not hand the app");
            var token = env["DAPR_API_TOKEN"];
            token.ContainsKey("value").ShouldBeFalse(appId);
            Text(token["valueFrom"]!["secretKeyRef"]!["name"]).ShouldBe(secret, appId);
            Text(token["valueFrom"]!["secretKeyRef"]!["key"]).ShouldBe("token", appId);
        }
    }

    [Fact]
    public void Every_app_listens_on_the_pod_address_with_the_credentials_its_callers_need()
    {
        foreach (var deployment in OfKind("Deployment"))
        {
            var appId = Text(deployment["metadata"]!["name"]);
            var template = deployment["spec"]!["template"]!;
            var annotations = template["metadata"]!["annotations"]!.AsObject();
            var env = template["spec"]!["containers"]![0]!["env"]!.AsArray().Select(e => e!.AsObject()).ToDictionary(e => Text(e["name"]));
            // The kubelet probes the app at the pod's address, so it cannot stay on loopback.
            Text(env["PolicyGrid__Dapr__BindAddress"]["value"]).ShouldBe("0.0.0.0", appId);
            env.ShouldNotContainKey("PolicyGrid__Dapr__Insecure", appId);
            if (appId == DaprNames.Apps.Registry)
            {
                // The public API: users call it through its Service with a bearer token from a secret.
                Text(env["PolicyGrid__Auth__Tokens__0__Name"]["value"]).ShouldNotBeNullOrEmpty();
                var token = env["PolicyGrid__Auth__Tokens__0__Token"];
                token.ContainsKey("value").ShouldBeFalse();
                Text(token["valueFrom"]!["secretKeyRef"]!["name"]).ShouldBe("policygrid-api-tokens");
                Text(env["PolicyGrid__Auth__Tokens__0__Scopes__0"]["value"]).ShouldBe("write");
                annotations.ShouldNotContainKey("dapr.io/app-token-secret");
                env.ShouldNotContainKey("APP_API_TOKEN");
            }
            else
            {
                // Called only by its sidecar: daprd sends the secret's token, the app checks it.
                Text(annotations["dapr.io/app-token-secret"]).ShouldBe("policygrid-app-api-token", appId);
                var token = env["APP_API_TOKEN"];
                token.ContainsKey("value").ShouldBeFalse(appId);
                Text(token["valueFrom"]!["secretKeyRef"]!["name"]).ShouldBe("policygrid-app-api-token", appId);
                Text(token["valueFrom"]!["secretKeyRef"]!["key"]).ShouldBe("token", appId);
            }
        }
    }

    [Fact]
    public void The_apps_that_call_http_executor_nodes_may_hold_the_node_token_from_an_optional_secret()
    {
        // The registry forwards to http(s) executor nodes and installs them with its node token; the graphs app calls
        // function nodes itself. Without the token those nodes answer 401 (or are installed open), so both read it from
        // one secret, optional so that a deployment with no such nodes starts without creating it.
        string[] callers = [DaprNames.Apps.Registry, DaprNames.Apps.Graphs];
        foreach (var deployment in OfKind("Deployment"))
        {
            var appId = Text(deployment["metadata"]!["name"]);
            var env = deployment["spec"]!["template"]!["spec"]!["containers"]![0]!["env"]!.AsArray().Select(e => e!.AsObject()).ToDictionary(e => Text(e["name"]));
            if (!callers.Contains(appId))
            {
                env.ShouldNotContainKey("PolicyGrid__Runtime__RemoteExecutors__Token", appId);
                continue;
            }
            var token = env["PolicyGrid__Runtime__RemoteExecutors__Token"];
            token.ContainsKey("value").ShouldBeFalse(appId);
            var secret = token["valueFrom"]!["secretKeyRef"]!;
            Text(secret["name"]).ShouldBe("policygrid-node-token", appId);
            Text(secret["key"]).ShouldBe("token", appId);
            Text(secret["optional"]).ShouldBe("true", appId);
        }
    }

    // The apps that run policy code: root with a handful of capabilities, so each Python worker gets a uid of its own.
    private static readonly string[] PolicyHosts = [DaprNames.Apps.Registry, DaprNames.Apps.Executor, DaprNames.Apps.Functions];

    [Fact]
    public void Apps_that_run_policies_may_give_each_worker_its_own_uid_and_the_others_run_unprivileged()
    {
        foreach (var deployment in OfKind("Deployment"))
        {
            var appId = Text(deployment["metadata"]!["name"]);
            var spec = deployment["spec"]!["template"]!["spec"]!;
            var container = spec["containers"]![0]!;
            var capabilities = container["securityContext"]!["capabilities"]!;
            capabilities["drop"]!.AsArray().Select(Text).ShouldBe(["ALL"], appId);
            Text(spec["securityContext"]!["seccompProfile"]!["type"]).ShouldBe("RuntimeDefault", appId);
            if (PolicyHosts.Contains(appId))
            {
                Text(spec["securityContext"]!["runAsUser"]).ShouldBe("0", appId);
                capabilities["add"]!.AsArray().Select(Text).ShouldBe(["CHOWN", "DAC_OVERRIDE", "KILL", "SETGID", "SETUID"], appId);
            }
            else
            {
                Text(spec["securityContext"]!["runAsNonRoot"]).ShouldBe("true", appId);
                capabilities["add"].ShouldBeNull(appId);
            }
            // No world-readable Kubernetes API token where workers of other uids run.
            Text(spec["automountServiceAccountToken"]).ShouldBe("false", appId);
        }
    }

    [Fact]
    public void The_executor_mounts_its_service_account_token_readable_by_root_only()
    {
        var spec = OfKind("Deployment").Single(d => Text(d["metadata"]!["name"]) == DaprNames.Apps.Executor)["spec"]!["template"]!["spec"]!;
        var volume = spec["volumes"]!.AsArray().Single(v => Text(v!["name"]) == "kube-api-access")!["projected"]!;
        Text(volume["defaultMode"]).ShouldBeOneOf("0400", "256");
        volume["sources"]!.AsArray().ShouldContain(s => s!["serviceAccountToken"] != null);
        spec["containers"]![0]!["volumeMounts"]!.AsArray()
            .ShouldContain(m => Text(m!["name"]) == "kube-api-access" && Text(m!["mountPath"]) == "/var/run/secrets/kubernetes.io/serviceaccount");
    }

    [Fact]
    public void Every_app_has_a_service_onto_its_port()
    {
        var services = OfKind("Service").ToList();
        services.Select(s => Text(s["metadata"]!["name"])).ShouldBe(DaprNames.Apps.All, ignoreOrder: true);
        foreach (var service in services)
        {
            var appId = Text(service["metadata"]!["name"]);
            Text(service["spec"]!["selector"]!["app.kubernetes.io/name"]).ShouldBe(appId);
            Text(service["spec"]!["ports"]![0]!["targetPort"]).ShouldBe(Port(appId), appId);
        }
    }

    [Fact]
    public void The_configuration_and_resiliency_carry_the_names_the_apps_use()
    {
        var configuration = LoadOne("deploy/base/configuration.yaml");
        Text(configuration["kind"]).ShouldBe("Configuration");
        Text(configuration["metadata"]!["name"]).ShouldBe(DaprNames.Configuration);
        WorkflowRetentionChecks.Check(configuration);
        ResiliencyChecks.Check(LoadOne("deploy/base/resiliency.yaml"));
    }

    [Fact]
    public void Evaluation_events_may_take_as_long_as_a_policy_may_run() =>
        PubSubChecks.Check(Component(DaprNames.Components.PubSub), LoadOne("deploy/base/resiliency.yaml"));

    [Fact]
    public void Only_the_apps_that_use_each_topic_may_publish_or_subscribe_to_it() =>
        PubSubScopeChecks.Check(Component(DaprNames.Components.PubSub));

    [Fact]
    public void Kustomize_base_lists_every_manifest_and_the_dev_overlay_builds_on_it()
    {
        var kustomization = LoadOne("deploy/base/kustomization.yaml");
        var listed = kustomization["resources"]!.AsArray().Select(r => Text(r)).ToList();
        foreach (var resource in listed) File.Exists(PathOf("deploy/base/" + resource)).ShouldBeTrue(resource);
        var manifests = Directory.GetFiles(PathOf("deploy/base"), "*.yaml", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(PathOf("deploy/base"), f).Replace('\\', '/'))
            .Where(f => f != "kustomization.yaml");
        manifests.ShouldBe(listed, ignoreOrder: true);

        var dev = LoadOne("deploy/overlays/dev/kustomization.yaml");
        dev["resources"]!.AsArray().Select(r => Text(r)).ShouldContain("../../base");
        Text(dev["namespace"]).ShouldNotBeNullOrEmpty();
        foreach (var patch in dev["patches"]!.AsArray()) File.Exists(PathOf("deploy/overlays/dev/" + Text(patch!["path"]))).ShouldBeTrue();
    }

    [Fact]
    public void The_dev_overlay_lets_the_functions_autoscaler_keep_the_one_replica_it_gives_each_app()
    {
        // The overlay patches every Deployment to one replica; the base autoscaler's minimum (2) scaled policy-functions
        // straight back to two pods.
        static string Value(JsonArray patch, string path) =>
            patch.Single(op => Text(op!["path"]) == path)!["value"]!.ToJsonString().Trim('"');
        var replicas = Value(RepoYaml.LoadList("deploy/overlays/dev/replicas.yaml"), "/spec/replicas");
        var hpa = OfKind("HorizontalPodAutoscaler").Single();
        var dev = LoadOne("deploy/overlays/dev/kustomization.yaml");
        var patch = dev["patches"]!.AsArray().Single(p => Text(p!["target"]?["kind"]) == "HorizontalPodAutoscaler")!;
        Text(patch["target"]!["name"]).ShouldBe(Text(hpa["metadata"]!["name"]));

        var scaling = RepoYaml.LoadList("deploy/overlays/dev/" + Text(patch["path"]));
        Value(scaling, "/spec/minReplicas").ShouldBe(replicas);
        int.Parse(Value(scaling, "/spec/maxReplicas"), CultureInfo.InvariantCulture).ShouldBeGreaterThanOrEqualTo(int.Parse(replicas, CultureInfo.InvariantCulture));
    }

    [Fact]
    public void The_dev_overlay_points_type_3_jobs_at_the_runner_image_the_docs_build_with_the_same_tag()
    {
        var dev = LoadOne("deploy/overlays/dev/kustomization.yaml");
        var tag = Text(dev["images"]!.AsArray().First()!["newTag"]);
        var patch = LoadOne("deploy/overlays/dev/job-runner-image.yaml");
        var env = patch["spec"]!["template"]!["spec"]!["containers"]!.AsArray().Single()!["env"]!.AsArray().Single()!;

        Text(env["name"]).ShouldBe("PolicyGrid__Jobs__Kubernetes__RunnerImage");
        Text(env["value"]).ShouldBe($"policygrid/job-runner:{tag}");
        File.ReadAllText(PathOf("docs/dapr.md")).ShouldContain($"-t policygrid/job-runner:{tag} .");
    }

    [Theory]
    [InlineData("registry", DaprNames.Apps.Registry, "services/PolicyGrid.Registry/PolicyGrid.Registry.csproj", true)]
    [InlineData("executor", DaprNames.Apps.Executor, "services/PolicyGrid.Executor/PolicyGrid.Executor.csproj", true)]
    [InlineData("functions", DaprNames.Apps.Functions, "services/PolicyGrid.Functions/PolicyGrid.Functions.csproj", true)]
    [InlineData("graphs", DaprNames.Apps.Graphs, "workflows/PolicyGrid.Workflows/PolicyGrid.Workflows.csproj", false)]
    public void Each_app_has_a_multi_stage_non_root_dockerfile(string name, string appId, string project, bool runsPolicies)
    {
        var lines = File.ReadAllLines(PathOf($"deploy/docker/{name}.Dockerfile")).Select(l => l.Trim()).Where(l => !l.StartsWith('#')).ToList();
        lines.Count(l => l.StartsWith("FROM ", StringComparison.Ordinal)).ShouldBeGreaterThanOrEqualTo(2);
        lines.ShouldContain(l => l.StartsWith("RUN dotnet publish " + project, StringComparison.Ordinal));
        File.Exists(PathOf(project)).ShouldBeTrue(project);
        var user = lines.Last(l => l.StartsWith("USER ", StringComparison.Ordinal));
        user.ShouldNotContain("root");
        lines.ShouldContain("EXPOSE " + Port(appId));
        lines.ShouldContain(l => l.Contains("APP_PORT=" + Port(appId), StringComparison.Ordinal));
        lines.ShouldContain(l => l.StartsWith("ENTRYPOINT [\"dotnet\", \"" + Path.GetFileNameWithoutExtension(project) + ".dll\"]", StringComparison.Ordinal));
        lines.Any(l => l.Contains("python3", StringComparison.Ordinal)).ShouldBe(runsPolicies);
    }

    [Theory]
    [InlineData("components")]
    [InlineData("deploy")]
    [InlineData("services")]
    [InlineData("workflows")]
    public void Each_area_explains_itself_in_a_readme(string folder) =>
        new FileInfo(PathOf(folder + "/README.md")).Length.ShouldBeGreaterThan(100);
}
