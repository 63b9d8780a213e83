using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Events;

/// <summary>The event flow of `policygrid serve` with a real policy in its own worker pool, nothing substituted.</summary>
public sealed class RealPolicyEventsTests : IAsyncDisposable
{
    private readonly EventsApiTests.EmbeddedServer server = new(realPolicies: true);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        await server.DisposeAsync();
        try { Directory.Delete(server.DataDirectory, recursive: true); } catch (IOException) { }
    }

    private const string Counter = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                context["seen"] = context.get("seen", 0) + 1
                return {"allowed": input_data.get("ip") in parameters.get("local_allowlist", []), "seen": context["seen"]}
        """;

    private async Task<HttpClient> RegisterCounterAsync()
    {
        var client = server.CreateClient();
        using var zipped = new MemoryStream();
        using (var zip = new ZipArchive(zipped, ZipArchiveMode.Create, leaveOpen: true))
        using (var w = new StreamWriter(zip.CreateEntry("code/function.py").Open(), Encoding.UTF8))
            w.Write(Counter);
        var upload = new ByteArrayContent(zipped.ToArray());
        upload.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        var code = JsonNode.Parse(await (await client.PostAsync("/bundles", upload, Ct)).Content.ReadAsStringAsync(Ct))!["data"]!["code"]!.GetValue<string>();
        var policy = new JsonObject
        {
            ["name"] = "counter", ["version"] = "1.0", ["release_tag"] = "beta", ["code"] = code, ["type"] = "python_class_v1",
            ["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1") },
        };
        (await client.PostAsync("/policy", new StringContent(policy.ToJsonString(), Encoding.UTF8, "application/json"), Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        return client;
    }

    private static async Task<JsonNode> Send(HttpClient client, string id, string ip)
    {
        var content = new StringContent(new JsonObject
        {
            ["specversion"] = "1.0", ["id"] = id, ["source"] = "urn:test", ["type"] = EventTypes.Evaluation,
            ["data"] = new JsonObject { ["policy_rule_uri"] = "counter:1.0-beta", ["input_data"] = new JsonObject { ["ip"] = ip }, ["context_key"] = "tenant-a" },
        }.ToJsonString(), Encoding.UTF8);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/cloudevents+json");
        var response = await client.PostAsync("/events", content, Ct);
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
        response.StatusCode.ShouldBe(HttpStatusCode.OK, body.ToJsonString());
        return body["data"]!["decision"]!;
    }

    [Fact]
    public async Task Events_run_the_policy_keep_its_context_and_publish_each_decision()
    {
        var client = await RegisterCounterAsync();

        (await Send(client, "e1", "10.0.0.1"))["data"]!["allowed"]!.GetValue<bool>().ShouldBeTrue();
        var second = await Send(client, "e2", "10.9.9.9");

        second["data"]!["allowed"]!.GetValue<bool>().ShouldBeFalse();
        second["data"]!["seen"]!.GetValue<int>().ShouldBe(2); // context persisted between events
        var published = JsonNode.Parse(await client.GetStringAsync("/events/decisions?correlation_id=e2", Ct))!["data"]!.AsArray();
        JsonNode.DeepEquals(published.ShouldHaveSingleItem()!["data"], second).ShouldBeTrue();
    }

    [Fact]
    public async Task A_redelivered_event_gets_its_first_decision_again_without_running_the_policy_twice()
    {
        var client = await RegisterCounterAsync();

        var first = await Send(client, "once", "10.0.0.1");
        var redelivered = await Send(client, "once", "10.0.0.1");

        first["data"]!["seen"]!.GetValue<int>().ShouldBe(1);
        JsonNode.DeepEquals(redelivered["data"], first["data"]).ShouldBeTrue(redelivered.ToJsonString());
        (await Send(client, "next", "10.0.0.1"))["data"]!["seen"]!.GetValue<int>().ShouldBe(2);
        // An id names one event: the same id with other data is refused in a decision, and runs nothing.
        var reused = await Send(client, "once", "10.9.9.9");
        reused["success"]!.GetValue<bool>().ShouldBeFalse();
        reused["status"]!.GetValue<int>().ShouldBe(409);
        // Said in the event's terms: its sender set no X-PolicyGrid-Call-Id (the message used to name that header).
        reused["message"]!.GetValue<string>().ShouldBe("CloudEvent id 'once' from source 'urn:test' was already used for an event with other data; " +
            "an id names one event (a redelivery carries the same data), so a new event needs a new id");
        (await Send(client, "last", "10.0.0.1"))["data"]!["seen"]!.GetValue<int>().ShouldBe(3);
    }
}
