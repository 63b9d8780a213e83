using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using NSubstitute;
using NSubstitute.ExceptionExtensions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Events;

/// <summary>
/// The event flow without Dapr: the embedded server (the `policygrid serve` composition, real
/// SQLite) takes evaluation CloudEvents on POST /events and serves decisions on GET /events/decisions.
/// What the policy answers is decided per test by the built-in executor's substitute.
/// </summary>
public sealed class EventsApiTests : IAsyncDisposable
{
    public sealed class EmbeddedServer(bool realPolicies = false, string? token = null) : WebApplicationFactory<PolicyGrid.Cli.Program>
    {
        public string DataDirectory { get; } = Path.Combine(Path.GetTempPath(), "pg-dapr-events-tests", Guid.NewGuid().ToString("N"));
        public IPolicyExecutor Policies { get; } = Substitute.For<IPolicyExecutor>();

        protected override IHost CreateHost(IHostBuilder builder)
        {
            Directory.CreateDirectory(DataDirectory);
            builder.ConfigureHostConfiguration(c => c.AddInMemoryCollection(new Dictionary<string, string?> { ["data"] = DataDirectory }));
            return base.CreateHost(builder);
        }

        /// <summary>The name of the one token <c>token</c> configures (read and write).</summary>
        public const string TokenName = "checkout-service";

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            if (token is not null)
                builder.UseSetting("PolicyGrid:Auth:Tokens:0:Name", TokenName).UseSetting("PolicyGrid:Auth:Tokens:0:Token", token)
                    .UseSetting("PolicyGrid:Auth:Tokens:0:Scopes:0", "write");
            builder.UseSetting("PolicyGrid:Runtime:Pool:Workers", "1").ConfigureTestServices(services =>
            {
                if (realPolicies) return;
                var local = Substitute.For<IExecutorTransport>();
                local.CanHandle(Arg.Is<Uri>(u => u.Scheme == "inproc")).Returns(true);
                local.For(Arg.Any<Uri>()).Returns(Policies);
                services.Insert(0, ServiceDescriptor.Singleton(local));
            });
        }
    }

    private readonly EmbeddedServer server = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        await server.DisposeAsync();
        try { Directory.Delete(server.DataDirectory, recursive: true); } catch (IOException) { }
    }

    private static JsonObject Evaluation(string correlationId) => new()
    {
        ["policy_rule_uri"] = "ip_allowlist:1.0-beta",
        ["input_data"] = new JsonObject { ["ip"] = "10.9.9.9" },
        ["correlation_id"] = correlationId,
    };

    private static HttpContent Structured(JsonObject data, string id = "e-1")
    {
        var content = new StringContent(new JsonObject
        {
            ["specversion"] = "1.0", ["id"] = id, ["source"] = "urn:checkout", ["type"] = EventTypes.Evaluation,
            ["datacontenttype"] = "application/json", ["data"] = data,
        }.ToJsonString(), Encoding.UTF8);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/cloudevents+json; charset=utf-8");
        return content;
    }

    private void PolicyAnswers(JsonObject output) =>
        server.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>()).Returns(new PolicyResult(output));

    private static async Task<JsonObject> Body(HttpResponseMessage response) =>
        JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!.AsObject();

    [Fact]
    public async Task A_structured_event_is_evaluated_and_its_decision_can_be_read_back()
    {
        PolicyAnswers(new JsonObject { ["allowed"] = false, ["reason"] = "denied" });
        var client = server.CreateClient();

        var posted = await client.PostAsync("/events", Structured(Evaluation("order-7")), Ct);
        var read = await Body(await client.GetAsync("/events/decisions?correlation_id=order-7", Ct));

        posted.StatusCode.ShouldBe(HttpStatusCode.OK);
        var answer = (await Body(posted))["data"]!;
        answer["correlation_id"]!.GetValue<string>().ShouldBe("order-7");
        answer["decision"]!["data"]!["allowed"]!.GetValue<bool>().ShouldBeFalse();
        var cloudEvent = read["data"]!.AsArray().ShouldHaveSingleItem()!;
        cloudEvent["specversion"]!.GetValue<string>().ShouldBe("1.0");
        cloudEvent["type"]!.GetValue<string>().ShouldBe(EventTypes.Decision);
        cloudEvent["topic"]!.GetValue<string>().ShouldBe("policy-decisions");
        JsonNode.DeepEquals(cloudEvent["data"], answer["decision"]).ShouldBeTrue();
        await server.Policies.Received(1).ExecuteAsync(Arg.Is<ExecutionRequest>(r => r.InputData["ip"]!.GetValue<string>() == "10.9.9.9"),
            Arg.Is<CallerIdentity>(c => c.Name == "event:urn:checkout"), Arg.Any<CancellationToken>());
    }

    [Fact]
    public async Task An_event_posted_with_a_token_runs_as_the_token_not_as_the_source_it_names()
    {
        const string token = "events-test-token-0123456789";
        await using var guarded = new EmbeddedServer(token: token);
        guarded.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject { ["allowed"] = true }));
        var client = guarded.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);

        var posted = await client.PostAsync("/events", Structured(Evaluation("order-8")), Ct);

        posted.StatusCode.ShouldBe(HttpStatusCode.OK);
        // The decision log records who asked this server, as for every other call; the source is any string the sender
        // writes (it used to be recorded as the caller, event:urn:checkout, whoever's token posted it).
        await guarded.Policies.Received(1).ExecuteAsync(Arg.Any<ExecutionRequest>(),
            Arg.Is<CallerIdentity>(c => c.Name == EmbeddedServer.TokenName), Arg.Any<CancellationToken>());
        try { Directory.Delete(guarded.DataDirectory, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task A_binary_mode_event_is_evaluated_too()
    {
        PolicyAnswers(new JsonObject { ["allowed"] = true });
        using var request = new HttpRequestMessage(HttpMethod.Post, "/events") { Content = new StringContent(Evaluation("bin-9").ToJsonString(), Encoding.UTF8, "application/json") };
        request.Headers.Add("ce-specversion", "1.0");
        request.Headers.Add("ce-id", "b-9");
        request.Headers.Add("ce-source", "urn:checkout");
        request.Headers.Add("ce-type", EventTypes.Evaluation);

        var response = await server.CreateClient().SendAsync(request, Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await Body(response))["data"]!["event_id"]!.GetValue<string>().ShouldBe("b-9");
    }

    [Fact]
    public async Task A_long_poll_returns_as_soon_as_the_decision_is_published()
    {
        PolicyAnswers(new JsonObject { ["allowed"] = true });
        var client = server.CreateClient();

        var waiting = client.GetAsync("/events/decisions?correlation_id=slow-1&wait=30", Ct);
        await client.PostAsync("/events", Structured(Evaluation("slow-1")), Ct);
        var read = await Body(await waiting.WaitAsync(TimeSpan.FromSeconds(20), Ct));

        read["data"]!.AsArray().ShouldHaveSingleItem()!["data"]!["correlation_id"]!.GetValue<string>().ShouldBe("slow-1");
    }

    [Fact]
    public async Task A_policy_error_is_a_published_error_decision()
    {
        server.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(Problems.Retired("policy ip_allowlist:1.0-beta is retired"));

        var response = await server.CreateClient().PostAsync("/events", Structured(Evaluation("old-1")), Ct);

        var decision = (await Body(response))["data"]!["decision"]!;
        decision["success"]!.GetValue<bool>().ShouldBeFalse();
        decision["status"]!.GetValue<int>().ShouldBe(410);
        decision["code"]!.GetValue<string>().ShouldBe("retired");
    }

    [Fact]
    public async Task A_platform_failure_answers_its_own_status_and_publishes_nothing()
    {
        server.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(Problems.Overloaded("worker queue is full", 2));
        var client = server.CreateClient();

        var response = await client.PostAsync("/events", Structured(Evaluation("busy-1")), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.TooManyRequests);
        (await Body(response))["code"]!.GetValue<string>().ShouldBe("overloaded");
        (await Body(await client.GetAsync("/events/decisions?correlation_id=busy-1", Ct)))["data"]!.AsArray().ShouldBeEmpty();
    }

    [Fact]
    public async Task A_request_that_is_not_a_cloud_event_is_a_400_saying_how_to_send_one()
    {
        var response = await server.CreateClient().PostAsync("/events", new StringContent(Evaluation("x").ToJsonString(), Encoding.UTF8, "application/json"), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        var body = await Body(response);
        body["code"]!.GetValue<string>().ShouldBe("bad_request");
        body["message"]!.GetValue<string>().ShouldContain("ce-specversion");
    }

    [Fact]
    public async Task An_event_without_required_attributes_is_a_400_naming_them()
    {
        var content = new StringContent("""{"specversion": "1.0", "type": "t", "data": {}}""", Encoding.UTF8);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/cloudevents+json");

        var response = await server.CreateClient().PostAsync("/events", content, Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Body(response))["message"]!.GetValue<string>().ShouldContain("id");
    }

    [Fact]
    public async Task An_evaluation_with_bad_fields_is_a_400_naming_each_and_goes_to_the_dead_letter_topic()
    {
        var data = Evaluation("bad-1");
        data.Remove("input_data");
        data["policy_rule_uri"] = "no-colon";

        var response = await server.CreateClient().PostAsync("/events", Structured(data, id: "bad-event"), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        var body = await Body(response);
        body["code"]!.GetValue<string>().ShouldBe("validation_failed");
        body["errors"]!.AsArray().Select(e => e!["path"]!.GetValue<string>()).ShouldBe(["policy_rule_uri", "input_data"], ignoreOrder: true);
        var letters = await server.Services.GetRequiredService<IEventFeed>().ReadAsync(Topics.DeadLetter, null, TimeSpan.Zero, Ct);
        letters.ShouldHaveSingleItem().Data["event_id"]!.GetValue<string>().ShouldBe("bad-event");
        await server.Policies.DidNotReceiveWithAnyArgs().ExecuteAsync(default!, default!, default);
    }

    [Fact]
    public async Task An_empty_correlation_id_is_a_400_saying_it_must_not_be_empty()
    {
        var response = await server.CreateClient().PostAsync("/events", Structured(Evaluation("")), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Body(response))["message"]!.GetValue<string>().ShouldBe("correlation_id: must not be empty");
    }

    [Fact]
    public async Task A_correlation_id_too_long_to_read_back_is_a_400_naming_the_limit_and_nothing_runs()
    {
        var response = await server.CreateClient().PostAsync("/events", Structured(Evaluation(new string('c', 1025)), id: "long-1"), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Body(response))["message"]!.GetValue<string>().ShouldBe(
            "correlation_id: is 1025 characters, more than the 1024 a correlation id may have (it is read back in a URL)");
        await server.Policies.DidNotReceiveWithAnyArgs().ExecuteAsync(default!, default!, default);
        PolicyAnswers(new JsonObject { ["allowed"] = true });
        var longest = new string('c', 1024);
        (await server.CreateClient().PostAsync("/events", Structured(Evaluation(longest), id: "long-2"), Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await Body(await server.CreateClient().GetAsync($"/events/decisions?correlation_id={longest}", Ct)))["data"]!.AsArray().ShouldHaveSingleItem();
    }

    [Fact]
    public async Task Data_base64_that_is_not_base64_is_a_400_saying_so()
    {
        var content = new StringContent("""{"specversion": "1.0", "id": "b64", "source": "urn:checkout", "type": "t", "data_base64": "%%%"}""", Encoding.UTF8);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/cloudevents+json");

        var response = await server.CreateClient().PostAsync("/events", content, Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Body(response))["message"]!.GetValue<string>().ShouldContain("data_base64 is not valid base64");
    }

    [Theory]
    [InlineData(1e-9, "at least 0.0000001 seconds")]
    [InlineData(1e300, "more than 0 and at most 300 (PolicyGrid:Runtime:Execution:MaxTimeout)")]
    public async Task An_evaluation_timeout_the_clock_cannot_hold_is_a_400_before_anything_runs(double timeout, string message)
    {
        var data = Evaluation("tiny-1");
        data["timeout_seconds"] = timeout;

        var response = await server.CreateClient().PostAsync("/events", Structured(data), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Body(response))["message"]!.GetValue<string>().ShouldContain("timeout_seconds: must be " + message);
        await server.Policies.DidNotReceiveWithAnyArgs().ExecuteAsync(default!, default!, default);
    }

    [Theory]
    [InlineData("soon")]
    [InlineData("-1")]
    [InlineData("3600")]
    public async Task A_bad_wait_is_a_400(string wait)
    {
        var response = await server.CreateClient().GetAsync("/events/decisions?wait=" + wait, Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Body(response))["message"]!.GetValue<string>().ShouldContain("wait");
    }
}
