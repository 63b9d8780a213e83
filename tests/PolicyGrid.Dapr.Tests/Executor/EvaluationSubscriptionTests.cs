using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using NSubstitute;
using NSubstitute.ExceptionExtensions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Executor;

public sealed class EvaluationSubscriptionTests : IDisposable
{
    private readonly ExecutorAppFactory app = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => app.Dispose();

    /// <summary>An event exactly as daprd delivers it to a subscriber: structured mode, Dapr's own extensions and headers.</summary>
    private static HttpRequestMessage Delivery(JsonObject data, string id = "3f0b8a4e-7d1c-4b6a-9a51-0c2d7e9f1a23", string dataContentType = "application/json")
    {
        var cloudEvent = new JsonObject
        {
            ["data"] = data,
            ["datacontenttype"] = dataContentType,
            ["id"] = id,
            ["pubsubname"] = DaprNames.Components.PubSub,
            ["source"] = "policy-registry",
            ["specversion"] = "1.0",
            ["time"] = "2026-11-25T13:30:00Z",
            ["topic"] = DaprNames.Topics.Evaluations,
            ["traceid"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ["tracestate"] = "",
            ["type"] = "com.dapr.event.sent",
        };
        return Raw(cloudEvent.ToJsonString(), "application/cloudevents+json");
    }

    private static HttpRequestMessage Raw(string body, string contentType)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, DaprNames.EvaluationsRoute)
        {
            Content = new StringContent(body, Encoding.UTF8),
        };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        request.Headers.Add("pubsubname", DaprNames.Components.PubSub);
        request.Headers.Add("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        return request;
    }

    private static JsonObject Evaluation(string? correlationId = "order-42")
    {
        var data = new JsonObject
        {
            ["policy_rule_uri"] = "ip_allowlist:1.0-beta",
            ["input_data"] = new JsonObject { ["ip"] = "10.0.0.1" },
            ["parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1") },
        };
        if (correlationId is not null) data["correlation_id"] = correlationId;
        return data;
    }

    private async Task<string> SidecarStatus(HttpRequestMessage request)
    {
        var response = await app.CreateClient().SendAsync(request, Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.OK); // Dapr reads the status from the body
        return JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["status"]!.GetValue<string>();
    }

    [Fact]
    public async Task Subscribe_declares_the_evaluations_topic_its_route_and_dead_letter_topic_and_the_policy_events_topic()
    {
        var body = JsonNode.Parse(await app.CreateClient().GetStringAsync("/dapr/subscribe", Ct));

        JsonNode.DeepEquals(body, JsonNode.Parse("""
            [{"pubsubname": "policygrid-pubsub", "topic": "policy-evaluations",
              "route": "/dapr/events/policy-evaluations", "deadLetterTopic": "policy-evaluations-deadletter"},
             {"pubsubname": "policygrid-pubsub", "topic": "policy-events", "route": "/dapr/events/policy-events"}]
            """)).ShouldBeTrue(body!.ToJsonString());
    }

    [Fact]
    public async Task A_delivered_evaluation_publishes_its_decision_with_the_same_correlation_id()
    {
        app.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject { ["allowed"] = true, ["reason"] = "allowed" }));

        (await SidecarStatus(Delivery(Evaluation()))).ShouldBe("SUCCESS");

        await app.Policies.Received(1).ExecuteAsync(
            Arg.Is<ExecutionRequest>(r => r.PolicyRuleUri == "ip_allowlist:1.0-beta" && r.InputData["ip"]!.GetValue<string>() == "10.0.0.1"
                && r.Parameters!["local_allowlist"]![0]!.GetValue<string>() == "10.0.0.1"),
            Arg.Is<CallerIdentity>(c => c.Name == "event:policy-registry"), Arg.Any<CancellationToken>());
        var (topic, data, metadata) = app.Published.ShouldHaveSingleItem();
        topic.ShouldBe("policy-decisions");
        metadata["cloudevent.type"].ShouldBe(EventTypes.Decision);
        JsonNode.DeepEquals(data, JsonNode.Parse("""
            {"correlation_id": "order-42", "event_id": "3f0b8a4e-7d1c-4b6a-9a51-0c2d7e9f1a23", "policy_rule_uri": "ip_allowlist:1.0-beta",
             "success": true, "data": {"allowed": true, "reason": "allowed"}}
            """)).ShouldBeTrue(data.ToJsonString());
    }

    [Fact]
    public async Task Json_data_with_a_charset_is_read_as_json()
    {
        app.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject()));

        (await SidecarStatus(Delivery(Evaluation("cs-1"), dataContentType: "application/json; charset=utf-8"))).ShouldBe("SUCCESS");

        app.Published.ShouldHaveSingleItem().Data["correlation_id"]!.GetValue<string>().ShouldBe("cs-1");
    }

    [Fact]
    public async Task Without_a_correlation_id_the_event_id_correlates()
    {
        app.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject()));

        await SidecarStatus(Delivery(Evaluation(correlationId: null), id: "evt-7"));

        app.Published.ShouldHaveSingleItem().Data["correlation_id"]!.GetValue<string>().ShouldBe("evt-7");
    }

    [Theory]
    [InlineData(422, "policy_error")]
    [InlineData(410, "retired")]
    [InlineData(404, "not_found")]
    [InlineData(504, "policy_timeout")]
    public async Task A_failing_policy_publishes_an_error_decision_and_is_not_redelivered(int status, string code)
    {
        app.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(new PolicyGridException(status, code, "ZeroDivisionError: division by zero"));

        (await SidecarStatus(Delivery(Evaluation()))).ShouldBe("SUCCESS");

        var (topic, data, _) = app.Published.ShouldHaveSingleItem();
        topic.ShouldBe("policy-decisions");
        JsonNode.DeepEquals(data, JsonNode.Parse($$"""
            {"correlation_id": "order-42", "event_id": "3f0b8a4e-7d1c-4b6a-9a51-0c2d7e9f1a23", "policy_rule_uri": "ip_allowlist:1.0-beta",
             "success": false, "status": {{status}}, "code": "{{code}}", "message": "ZeroDivisionError: division by zero"}
            """)).ShouldBeTrue(data.ToJsonString());
    }

    [Theory]
    [InlineData(503, "backend_unavailable")]
    [InlineData(429, "overloaded")]
    [InlineData(502, "backend_error")]
    public async Task A_platform_failure_asks_the_sidecar_to_retry_and_publishes_nothing(int status, string code)
    {
        app.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(new PolicyGridException(status, code, "document store unavailable"));

        (await SidecarStatus(Delivery(Evaluation()))).ShouldBe("RETRY");
        app.Published.ShouldBeEmpty();
    }

    [Fact]
    public async Task A_decision_that_cannot_be_published_is_retried()
    {
        app.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject()));
        app.Dapr.PublishEventAsync(DaprNames.Components.PubSub, "policy-decisions", Arg.Any<JsonObject>(), Arg.Any<Dictionary<string, string>>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(new global::Dapr.DaprException("Publish operation failed", new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.Unavailable, "redis down"))));

        (await SidecarStatus(Delivery(Evaluation()))).ShouldBe("RETRY");
    }

    [Fact]
    public async Task A_body_that_is_not_a_cloud_event_goes_to_the_dead_letter_topic_and_is_dropped()
    {
        (await SidecarStatus(Raw("{not json", "application/cloudevents+json"))).ShouldBe("DROP");

        var (topic, data, metadata) = app.Published.ShouldHaveSingleItem();
        topic.ShouldBe("policy-evaluations-deadletter");
        metadata["cloudevent.type"].ShouldBe(EventTypes.DeadLetter);
        data["reason"]!.GetValue<string>().ShouldContain("structured CloudEvent is invalid");
        data["event"]!.GetValue<string>().ShouldBe("{not json");
        await app.Policies.DidNotReceiveWithAnyArgs().ExecuteAsync(default!, default!, default);
    }

    [Fact]
    public async Task An_evaluation_missing_fields_goes_to_the_dead_letter_topic_whole_with_the_reason()
    {
        var data = Evaluation();
        data.Remove("input_data");
        data["timeout_seconds"] = "soon";

        (await SidecarStatus(Delivery(data))).ShouldBe("DROP");

        var (topic, letter, _) = app.Published.ShouldHaveSingleItem();
        topic.ShouldBe("policy-evaluations-deadletter");
        letter["code"]!.GetValue<string>().ShouldBe("validation_failed");
        letter["reason"]!.GetValue<string>().ShouldContain("input_data");
        letter["reason"]!.GetValue<string>().ShouldContain("timeout_seconds");
        letter["event"]!["id"]!.GetValue<string>().ShouldBe("3f0b8a4e-7d1c-4b6a-9a51-0c2d7e9f1a23");
        letter["event"]!["data"]!["policy_rule_uri"]!.GetValue<string>().ShouldBe("ip_allowlist:1.0-beta");
    }

    [Fact]
    public async Task A_cloud_event_without_data_is_dropped_with_the_reason()
    {
        var request = Raw("""{"specversion": "1.0", "id": "e1", "source": "s", "type": "t"}""", "application/cloudevents+json");

        (await SidecarStatus(request)).ShouldBe("DROP");

        app.Published.ShouldHaveSingleItem().Data["reason"]!.GetValue<string>().ShouldContain("no data");
    }

    [Fact]
    public async Task Binary_mode_events_are_read_too()
    {
        app.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject { ["allowed"] = false }));
        var request = Raw(Evaluation("bin-1").ToJsonString(), "application/json");
        request.Headers.Add("ce-specversion", "1.0");
        request.Headers.Add("ce-id", "b-1");
        request.Headers.Add("ce-source", "urn:test");
        request.Headers.Add("ce-type", EventTypes.Evaluation);

        (await SidecarStatus(request)).ShouldBe("SUCCESS");

        app.Published.ShouldHaveSingleItem().Data["correlation_id"]!.GetValue<string>().ShouldBe("bin-1");
    }

    [Fact]
    public async Task With_an_app_api_token_only_the_sidecar_may_deliver()
    {
        using var guarded = new ExecutorAppFactory();
        guarded.Settings["APP_API_TOKEN"] = "from-the-sidecar";
        guarded.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject()));
        var client = guarded.CreateClient();

        var refused = await client.SendAsync(Delivery(Evaluation()), Ct);
        var delivery = Delivery(Evaluation());
        delivery.Headers.Add("dapr-api-token", "from-the-sidecar");
        var accepted = await client.SendAsync(delivery, Ct);

        refused.StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
        accepted.StatusCode.ShouldBe(HttpStatusCode.OK);
        guarded.Published.Count.ShouldBe(1);
    }
}
