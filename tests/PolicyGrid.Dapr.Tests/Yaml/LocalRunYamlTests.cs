using System.Text.Json.Nodes;
using Shouldly;
using static PolicyGrid.Dapr.Tests.Yaml.RepoYaml;

namespace PolicyGrid.Dapr.Tests.Yaml;

/// <summary>dapr.yaml and components/ say exactly what the code expects (DaprNames).</summary>
public sealed class LocalRunYamlTests
{
    private static readonly JsonObject RunFile = LoadOne("dapr.yaml");
    private static readonly List<(string File, JsonObject Doc)> Resources = LoadFolder("components").ToList();

    private static JsonObject Component(string name) =>
        Resources.Select(r => r.Doc).Single(d => Text(d["kind"]) == "Component" && Text(d["metadata"]!["name"]) == name);

    private static Dictionary<string, string> Metadata(JsonObject component) =>
        component["spec"]!["metadata"]!.AsArray().ToDictionary(m => Text(m!["name"]), m => Text(m!["value"]));

    [Fact]
    public void The_run_file_starts_every_app_with_its_id_and_port()
    {
        Text(RunFile["version"]).ShouldBe("1");
        var apps = RunFile["apps"]!.AsArray().Select(a => a!.AsObject()).ToList();

        apps.Select(a => Text(a["appID"])).ShouldBe(DaprNames.Apps.All, ignoreOrder: true);
        foreach (var app in apps)
        {
            var id = Text(app["appID"]);
            Text(app["appPort"]).ShouldBe(DaprNames.Ports.For(id).ToString(System.Globalization.CultureInfo.InvariantCulture), id);
            var dir = PathOf(Text(app["appDirPath"]));
            Directory.GetFiles(dir, "*.csproj").ShouldHaveSingleItem(id);
            // Apps share projects: they are built once beforehand, never by four racing `dotnet run`s.
            app["command"]!.AsArray().Select(c => Text(c)).ShouldBe(["dotnet", "run", "--no-build", "--no-launch-profile"], id);
        }
        // Self-hosted, each daprd reaches its app on loopback: the apps keep their default bind address and need no app token.
        foreach (var env in apps.Select(a => a["env"]).Append(RunFile["common"]!["env"]).OfType<JsonObject>())
        {
            env.ShouldNotContainKey("PolicyGrid__Dapr__BindAddress");
            env.ShouldNotContainKey("APP_API_TOKEN");
        }
        foreach (var port in new[] { "daprHTTPPort", "daprGRPCPort", "metricsPort" })
            apps.Select(a => Text(a[port])).Distinct().Count().ShouldBe(apps.Count, $"{port} must differ per app");
    }

    [Fact]
    public void The_run_file_reads_components_and_the_configuration_from_the_repository()
    {
        var common = RunFile["common"]!.AsObject();
        Text(common["resourcesPath"]).ShouldBe("./components");
        var config = LoadOne(Text(common["configFilePath"]));
        Text(config["kind"]).ShouldBe("Configuration");
        Text(config["metadata"]!["name"]).ShouldBe(DaprNames.Configuration);
        WorkflowRetentionChecks.Check(config);
        Text(common["env"]!["PolicyGrid__Dapr__DocumentQueries"]).ShouldBe(nameof(DocumentQueryMode.KeyIndex));
    }

    [Fact]
    public void Every_local_sidecar_takes_a_message_as_large_as_the_largest_bundle_upload() =>
        // daprd's default (4Mi) refused every bundle over ~3 MiB on its way to the bucket binding.
        KubernetesYamlTests.Quantity(Text(RunFile["common"]!["maxBodySize"])).ShouldBeGreaterThanOrEqualTo(KubernetesYamlTests.BundleMessageBytes);

    [Fact]
    public void Components_are_exactly_the_ones_the_code_names()
    {
        Resources.Where(r => Text(r.Doc["kind"]) == "Component").Select(r => Text(r.Doc["metadata"]!["name"]))
            .ShouldBe(DaprNames.Components.All, ignoreOrder: true);
        foreach (var (file, doc) in Resources)
        {
            Text(doc["apiVersion"]).ShouldBe("dapr.io/v1alpha1", file);
            if (doc["scopes"] is JsonArray scopes)
                scopes.Select(s => Text(s)).ShouldBeSubsetOf(DaprNames.Apps.All, file);
        }
    }

    [Fact]
    public void Local_components_run_on_the_redis_and_disk_of_dapr_init()
    {
        Text(Component(DaprNames.Components.DocumentStore)["spec"]!["type"]).ShouldBe("state.redis");
        Text(Component(DaprNames.Components.CacheStore)["spec"]!["type"]).ShouldBe("state.redis");
        Text(Component(DaprNames.Components.PubSub)["spec"]!["type"]).ShouldBe("pubsub.redis");
        Text(Component(DaprNames.Components.Bundles)["spec"]!["type"]).ShouldBe("bindings.localstorage");
        foreach (var name in new[] { DaprNames.Components.DocumentStore, DaprNames.Components.CacheStore, DaprNames.Components.ActorStore, DaprNames.Components.PubSub })
            Metadata(Component(name))["redisHost"].ShouldBe("localhost:6379", name);
    }

    [Fact]
    public void Shared_stores_are_not_prefixed_per_app()
    {
        // The registry writes policies the executor reads: both must see the same keys.
        Metadata(Component(DaprNames.Components.DocumentStore))["keyPrefix"].ShouldBe("name");
        Metadata(Component(DaprNames.Components.CacheStore))["keyPrefix"].ShouldBe("name");
    }

    [Fact]
    public void The_cache_expires_and_exactly_one_store_holds_actor_state()
    {
        int.Parse(Metadata(Component(DaprNames.Components.CacheStore))["ttlInSeconds"], System.Globalization.CultureInfo.InvariantCulture).ShouldBeGreaterThan(0);
        Resources.Where(r => Text(r.Doc["kind"]) == "Component")
            .Where(r => Metadata(r.Doc).GetValueOrDefault("actorStateStore") == "true")
            .Select(r => Text(r.Doc["metadata"]!["name"])).ShouldBe([DaprNames.Components.ActorStore]);
        Component(DaprNames.Components.ActorStore)["scopes"]!.AsArray().Select(s => Text(s))
            .ShouldBe([DaprNames.Apps.Functions, DaprNames.Apps.Graphs], ignoreOrder: true);
    }

    [Fact]
    public void Resiliency_targets_name_real_apps_components_and_policies()
    {
        var resiliency = Resources.Single(r => Text(r.Doc["kind"]) == "Resiliency").Doc;
        ResiliencyChecks.Check(resiliency);
    }

    [Fact]
    public void Evaluation_events_may_take_as_long_as_a_policy_may_run() =>
        PubSubChecks.Check(Component(DaprNames.Components.PubSub), Resources.Single(r => Text(r.Doc["kind"]) == "Resiliency").Doc);

    [Fact]
    public void Only_the_apps_that_use_each_topic_may_publish_or_subscribe_to_it() =>
        PubSubScopeChecks.Check(Component(DaprNames.Components.PubSub));
}

public static class ResiliencyChecks
{
    public static void Check(JsonObject resiliency)
    {
        Text(resiliency["metadata"]!["name"]).ShouldBe(DaprNames.Resiliency);
        var policies = resiliency["spec"]!["policies"]!.AsObject();
        HashSet<string> Named(string section) => policies[section]?.AsObject().Select(p => p.Key).ToHashSet() ?? [];
        var names = new Dictionary<string, HashSet<string>>
        {
            ["timeout"] = Named("timeouts"),
            ["retry"] = Named("retries"),
            ["circuitBreaker"] = Named("circuitBreakers"),
        };
        var targets = resiliency["spec"]!["targets"]!.AsObject();
        targets["apps"]!.AsObject().Select(p => p.Key).ShouldBeSubsetOf(DaprNames.Apps.All);
        targets["components"]!.AsObject().Select(p => p.Key).ShouldBeSubsetOf(DaprNames.Components.All);
        targets["components"]![DaprNames.Components.PubSub]!["inbound"]!["retry"].ShouldNotBeNull("evaluation events are retried before they are dead-lettered");

        IEnumerable<JsonObject> Uses(JsonNode node) => node switch
        {
            JsonObject o when o.Any(p => names.ContainsKey(p.Key)) => [o],
            JsonObject o => o.SelectMany(p => p.Value is null ? [] : Uses(p.Value)),
            _ => [],
        };
        foreach (var use in Uses(targets))
            foreach (var (kind, value) in use)
                names[kind].ShouldContain(Text(value), $"{kind} '{Text(value)}' is not defined under policies");

        // A Type 2 call may run a policy for Execution:MaxTimeout; the sidecar must not cut it off sooner (the caller
        // would get a 503 for a policy that was still within its own deadline).
        var runtime = new PolicyGrid.Runtime.PolicyRuntimeOptions();
        var executor = targets["apps"]![DaprNames.Apps.Executor]!;
        var invokeTimeout = GoDuration(Text(policies["timeouts"]![Text(executor["timeout"])]));
        invokeTimeout.ShouldBeGreaterThanOrEqualTo(runtime.Execution.MaxTimeout + runtime.RemoteExecutors.Overhead,
            "the invocation timeout of policy-executor must cover the longest policy deadline plus the network's share");

        // daprd counts each non-2xx answer of an invoked app, and each lost ETag race of a state store, as a failure of
        // the call: a breaker there opens on the 4xx/504 answers and 409s the contract expects and cuts every caller off.
        executor.AsObject().ShouldNotContainKey("circuitBreaker", "the executor's 4xx and 504 policy_timeout answers would trip it");
        targets["components"]![DaprNames.Components.DocumentStore]!["outbound"]!.AsObject()
            .ShouldNotContainKey("circuitBreaker", "lost ETag races (409, the key index's retries) would trip it");
    }

    /// <summary>A Go duration as Dapr reads it: <c>320s</c>, <c>5m20s</c>, <c>1h</c>, <c>500ms</c>.</summary>
    public static TimeSpan GoDuration(string text)
    {
        var total = TimeSpan.Zero;
        var matches = System.Text.RegularExpressions.Regex.Matches(text, @"(\d+(?:\.\d+)?)(ms|s|m|h)");
        string.Concat(matches.Select(m => m.Value)).ShouldBe(text, $"'{text}' is not a Go duration");
        foreach (System.Text.RegularExpressions.Match m in matches)
        {
            var value = double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            total += m.Groups[2].Value switch
            {
                "ms" => TimeSpan.FromMilliseconds(value),
                "s" => TimeSpan.FromSeconds(value),
                "m" => TimeSpan.FromMinutes(value),
                _ => TimeSpan.FromHours(value),
            };
        }
        return total;
    }
}

public static class PubSubChecks
{
    /// <summary>
    /// pubsub.redis cancels a delivery (daprd then dead-letters the raw event) and hands the event to another consumer
    /// once it has been pending for processingTimeout, 60 s by default. One delivery may run a policy for
    /// Execution:MaxTimeout plus the network's share, then go through the inbound retries of the resiliency policy.
    /// </summary>
    public static void Check(JsonObject component, JsonObject resiliency)
    {
        Text(component["spec"]!["type"]).ShouldBe("pubsub.redis", "this check knows Redis Streams' processingTimeout; another broker needs its own");
        var metadata = component["spec"]!["metadata"]!.AsArray().ToDictionary(m => Text(m!["name"]), m => Text(m!["value"]));
        metadata.ShouldContainKey("processingTimeout", "the default of 60 s cuts off evaluations of policies that may run 5 minutes");
        // Redis Streams reads a bare number as milliseconds.
        var processing = TimeSpan.FromMilliseconds(long.Parse(metadata["processingTimeout"], System.Globalization.CultureInfo.InvariantCulture));

        var runtime = new PolicyGrid.Runtime.PolicyRuntimeOptions();
        var policies = resiliency["spec"]!["policies"]!;
        var retryName = Text(resiliency["spec"]!["targets"]!["components"]![DaprNames.Components.PubSub]!["inbound"]!["retry"]);
        var retry = policies["retries"]![retryName]!;
        Text(retry["policy"]).ShouldBe("exponential");
        // Dapr's exponential back-off: 500 ms, ×1.5 each time, up to maxInterval, each randomized by up to ±50 %.
        var maxInterval = ResiliencyChecks.GoDuration(Text(retry["maxInterval"]));
        var retries = int.Parse(Text(retry["maxRetries"]), System.Globalization.CultureInfo.InvariantCulture);
        var backoff = TimeSpan.Zero;
        for (var i = 0; i < retries; i++)
            backoff += TimeSpan.FromMilliseconds(Math.Min(maxInterval.TotalMilliseconds, 500 * Math.Pow(1.5, i)) * 1.5);

        processing.ShouldBeGreaterThan(runtime.Execution.MaxTimeout + runtime.RemoteExecutors.Overhead + backoff,
            "a delivery must be allowed the longest policy deadline plus the inbound retries' back-off");
    }
}

public static class WorkflowRetentionChecks
{
    /// <summary>
    /// Graph runs are workflow instances whose history stays in the actor state store until purged; nothing in
    /// PolicyGrid purges them, so the Configuration must, for every terminal state, and not before the graphs app
    /// has read a completed run's output.
    /// </summary>
    public static void Check(JsonObject configuration)
    {
        var policy = configuration["spec"]?["workflow"]?["stateRetentionPolicy"] as JsonObject;
        policy.ShouldNotBeNull("without spec.workflow.stateRetentionPolicy every graph run's history stays in the actor store for good");
        foreach (var state in new[] { "completed", "failed", "terminated" })
        {
            var given = Text(policy[state] ?? policy["anyTerminal"]);
            given.ShouldNotBeNullOrEmpty($"runs that end {state} are never purged");
            ResiliencyChecks.GoDuration(given).ShouldBeGreaterThan(TimeSpan.Zero, $"{state}: the graphs app still reads the instance when it ends");
        }
    }
}
