using System.Text.Json.Nodes;
using Dapr;
using Dapr.Client;
using Grpc.Core;
using NSubstitute;
using NSubstitute.ExceptionExtensions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Events;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

public sealed class DaprEventBusTests
{
    private readonly DaprClient dapr = Substitute.For<DaprClient>();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Publishes_on_the_pubsub_component_with_the_event_type()
    {
        var data = new JsonObject { ["correlation_id"] = "c-1", ["success"] = true };

        await new DaprEventBus(dapr).PublishAsync(Topics.Decisions, data, Ct);

        await dapr.Received(1).PublishEventAsync(DaprNames.Components.PubSub, "policy-decisions", data,
            Arg.Is<Dictionary<string, string>>(m => m["cloudevent.type"] == EventTypes.Decision), Arg.Any<CancellationToken>());
    }

    [Fact]
    public async Task An_unreachable_sidecar_is_a_503()
    {
        dapr.PublishEventAsync(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<JsonObject>(), Arg.Any<Dictionary<string, string>>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(new DaprException("Publish operation failed", new RpcException(new Status(StatusCode.Unavailable, "connection refused"))));

        var e = await Should.ThrowAsync<PolicyGridException>(() => new DaprEventBus(dapr).PublishAsync(Topics.Decisions, new JsonObject(), Ct));

        e.Status.ShouldBe(503);
        e.Message.ShouldContain("policy-decisions");
    }
}
