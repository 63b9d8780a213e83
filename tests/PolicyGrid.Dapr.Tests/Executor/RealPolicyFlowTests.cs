using Microsoft.Extensions.DependencyInjection;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Dapr.Tests.Adapters;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Executor;

/// <summary>
/// A real policy through the Dapr shape: uploaded to the registry (bundle into the bucket binding,
/// policy into the state store, dry-loaded by the registry's workers), then run by the executor
/// app's own Python workers — over service invocation and over a pub/sub delivery. Only the sidecar
/// is played by the test (one state store and bucket shared by both apps, as a real one is).
/// </summary>
public sealed class RealPolicyFlowTests : IDisposable
{
    private const string IpAllowlist = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.rule_id = rule_id
                self.allowlist = list(parameters.get("local_allowlist", []))

            def eval(self, parameters, input_data, context):
                allowed = input_data.get("ip") in parameters.get("local_allowlist", self.allowlist)
                context["calls"] = context.get("calls", 0) + 1
                return {"allowed": allowed, "reason": "allowed" if allowed else "denied", "input_data": input_data}
        """;

    private readonly FakeStateStore sidecarState = new FakeStateStore().WithBucket();
    private readonly ExecutorAppFactory executor;
    private readonly RegistryApp registry;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public RealPolicyFlowTests()
    {
        executor = new ExecutorAppFactory(sidecarState, realPolicies: true);
        registry = new RegistryApp(sidecarState, new ForwardingSidecar(executor.Server.CreateHandler()));
    }

    public void Dispose()
    {
        registry.Dispose();
        executor.Dispose();
    }

    private static byte[] Zip(string functionPy)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        using (var w = new StreamWriter(zip.CreateEntry("code/function.py").Open(), Encoding.UTF8))
            w.Write(functionPy);
        return buffer.ToArray();
    }

    private async Task<string> RegisterPolicyAsync(HttpClient client)
    {
        var upload = new ByteArrayContent(Zip(IpAllowlist));
        upload.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        var bundle = JsonNode.Parse(await (await client.PostAsync("/bundles", upload, Ct)).Content.ReadAsStringAsync(Ct))!;
        var code = bundle["data"]!["code"]!.GetValue<string>();
        var policy = new JsonObject
        {
            ["name"] = "ip_allowlist", ["version"] = "1.0", ["release_tag"] = "beta", ["code"] = code, ["type"] = "python_class_v1",
            ["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1") },
        };
        var created = await client.PostAsync("/policy", new StringContent(policy.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.OK, await created.Content.ReadAsStringAsync(Ct));
        return code;
    }

    [Fact]
    public async Task Type_2_on_executor_dapr_runs_the_policy_in_the_executor_app()
    {
        var client = registry.CreateClient();
        var code = await RegisterPolicyAsync(client);

        async Task<JsonNode> Execute(string ip)
        {
            var response = await client.PostAsync("/executor/dapr/execute_policy", new StringContent(
                new JsonObject { ["policy_rule_uri"] = "ip_allowlist:1.0-beta", ["input_data"] = new JsonObject { ["ip"] = ip } }.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
            var body = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
            response.StatusCode.ShouldBe(HttpStatusCode.OK, body.ToJsonString());
            return body["data"]!;
        }

        (await Execute("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        (await Execute("10.9.9.9"))["reason"]!.GetValue<string>().ShouldBe("denied");
        sidecarState.Objects.ShouldContainKey("sha256/" + code["bundle://sha256/".Length..]);
        sidecarState.Entries.ShouldContainKey("policies/ip_allowlist:1.0-beta");
    }

    [Fact]
    public async Task An_evaluation_event_runs_the_policy_and_publishes_its_decision()
    {
        await RegisterPolicyAsync(registry.CreateClient());
        var delivery = new HttpRequestMessage(HttpMethod.Post, DaprNames.EvaluationsRoute)
        {
            Content = new StringContent(new JsonObject
            {
                ["specversion"] = "1.0", ["id"] = "evt-real", ["source"] = "checkout", ["type"] = "com.dapr.event.sent",
                ["topic"] = DaprNames.Topics.Evaluations, ["pubsubname"] = DaprNames.Components.PubSub, ["datacontenttype"] = "application/json",
                ["data"] = new JsonObject
                {
                    ["policy_rule_uri"] = "ip_allowlist:1.0-beta", ["input_data"] = new JsonObject { ["ip"] = "10.9.9.9" }, ["correlation_id"] = "order-1",
                },
            }.ToJsonString(), Encoding.UTF8),
        };
        delivery.Content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/cloudevents+json");

        var answer = await executor.CreateClient().SendAsync(delivery, Ct);

        JsonNode.Parse(await answer.Content.ReadAsStringAsync(Ct))!["status"]!.GetValue<string>().ShouldBe("SUCCESS");
        var (topic, decision, _) = executor.Published.ShouldHaveSingleItem();
        topic.ShouldBe(DaprNames.Topics.Decisions);
        decision["correlation_id"]!.GetValue<string>().ShouldBe("order-1");
        decision["success"]!.GetValue<bool>().ShouldBeTrue(decision.ToJsonString());
        decision["data"]!["allowed"]!.GetValue<bool>().ShouldBeFalse();
    }

    private async Task<string> DeliverPolicyEvent(JsonObject data)
    {
        var delivery = new HttpRequestMessage(HttpMethod.Post, DaprNames.PolicyEventsRoute)
        {
            Content = new StringContent(new JsonObject
            {
                ["specversion"] = "1.0", ["id"] = Guid.NewGuid().ToString(), ["source"] = "policy-registry", ["type"] = "io.policygrid.policy.gone",
                ["topic"] = DaprNames.Topics.PolicyEvents, ["pubsubname"] = DaprNames.Components.PubSub, ["datacontenttype"] = "application/json",
                ["data"] = data.DeepClone(),
            }.ToJsonString(), Encoding.UTF8),
        };
        delivery.Content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/cloudevents+json");
        var answer = await executor.CreateClient().SendAsync(delivery, Ct);
        answer.StatusCode.ShouldBe(HttpStatusCode.OK);
        return JsonNode.Parse(await answer.Content.ReadAsStringAsync(Ct))!["status"]!.GetValue<string>();
    }

    /// <summary>The policy registered, and run once in the executor app's pool: that pool, and the pids of its workers before the run.</summary>
    private async Task<(HttpClient Registry, PolicyGrid.Runtime.Hosting.PythonWorkerPool Pool, List<int> Before)> RunInExecutorAsync()
    {
        var client = registry.CreateClient();
        await RegisterPolicyAsync(client);
        var pool = executor.Services.GetRequiredService<PolicyGrid.Runtime.Hosting.PythonWorkerPool>();
        await pool.StartAsync(Ct);
        var before = pool.LiveWorkers().Select(w => w.Pid).ToList(); // the one the app starts to prove its interpreter
        var run = await client.PostAsync("/executor/dapr/execute_policy", new StringContent(
            new JsonObject { ["policy_rule_uri"] = "ip_allowlist:1.0-beta", ["input_data"] = new JsonObject { ["ip"] = "10.0.0.1" } }.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
        run.StatusCode.ShouldBe(HttpStatusCode.OK, await run.Content.ReadAsStringAsync(Ct));
        return (client, pool, before);
    }

    [Fact]
    public async Task A_deleted_policy_is_announced_on_policy_events_and_the_executor_app_stops_its_workers_when_the_event_arrives()
    {
        var (client, pool, before) = await RunInExecutorAsync();
        var catalog = executor.Services.GetRequiredService<PolicyGrid.Runtime.Execution.PolicyCatalog>();
        var workers = pool.LiveWorkers();
        workers.Count.ShouldBeGreaterThan(before.Count);
        catalog.ParsedCount.ShouldBe(1);
        var subscriptions = JsonNode.Parse(await executor.CreateClient().GetStringAsync("/dapr/subscribe", Ct))!.AsArray();
        subscriptions.ShouldContain(s => s!["topic"]!.GetValue<string>() == DaprNames.Topics.PolicyEvents && s["route"]!.GetValue<string>() == DaprNames.PolicyEventsRoute);

        // An event for a policy the store still holds as active (late, or not the registry's) changes nothing.
        (await DeliverPolicyEvent(new JsonObject { ["policy_rule_uri"] = "ip_allowlist:1.0-beta", ["change"] = "deleted" })).ShouldBe("SUCCESS");
        pool.LiveWorkers().Select(w => w.Pid).ShouldBe(workers.Select(w => w.Pid));

        var deleted = await client.DeleteAsync("/policy/ip_allowlist:1.0-beta", Ct);
        deleted.StatusCode.ShouldBe(HttpStatusCode.OK, await deleted.Content.ReadAsStringAsync(Ct));
        List<(string Topic, JsonObject Data, Dictionary<string, string> Metadata)> published;
        lock (executor.Published) published = [.. executor.Published];
        var (_, gone, metadata) = published.Where(p => p.Topic == DaprNames.Topics.PolicyEvents).ShouldHaveSingleItem();
        gone["policy_rule_uri"]!.GetValue<string>().ShouldBe("ip_allowlist:1.0-beta");
        gone["change"]!.GetValue<string>().ShouldBe("deleted");
        metadata["cloudevent.type"].ShouldBe("io.policygrid.policy.gone");

        (await DeliverPolicyEvent(gone)).ShouldBe("SUCCESS");

        pool.LiveWorkers().Select(w => w.Pid).ShouldBe(before);
        catalog.ParsedCount.ShouldBe(0);
        (await DeliverPolicyEvent(new JsonObject { ["change"] = "deleted" })).ShouldBe("DROP");
    }

    [Fact]
    public async Task A_policy_retired_while_its_event_was_lost_loses_its_workers_in_the_executor_app_at_the_next_sweep()
    {
        var (client, pool, before) = await RunInExecutorAsync();
        var workers = pool.LiveWorkers().Select(w => w.Pid).ToList();
        workers.Count.ShouldBeGreaterThan(before.Count);
        var teardown = executor.Services.GetRequiredService<PolicyGrid.Runtime.Execution.PolicyTeardown>();

        // Runnable: the sweep reads the store and leaves its workers.
        (await teardown.TearDownGoneAsync(Ct)).ShouldBe(0);
        pool.LiveWorkers().Select(w => w.Pid).ShouldBe(workers);

        // Retired on the registry; its policy-events event is published but never delivered to the executor app.
        var retired = await client.PutAsync("/policy/ip_allowlist:1.0-beta", new StringContent("""{"$set": {"status": "retired"}}""", Encoding.UTF8, "application/json"), Ct);
        retired.StatusCode.ShouldBe(HttpStatusCode.OK, await retired.Content.ReadAsStringAsync(Ct));
        lock (executor.Published) executor.Published.ShouldContain(p => p.Topic == DaprNames.Topics.PolicyEvents);
        pool.LiveWorkers().Select(w => w.Pid).ShouldBe(workers);

        (await teardown.TearDownGoneAsync(Ct)).ShouldBe(1);

        pool.LiveWorkers().Select(w => w.Pid).ShouldBe(before);
        executor.Services.GetRequiredService<PolicyGrid.Runtime.Execution.PolicyCatalog>().ParsedCount.ShouldBe(0);
    }
}
