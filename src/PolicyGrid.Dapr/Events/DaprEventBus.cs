using System.Text.Json.Nodes;
using Dapr.Client;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr.Events;

/// <summary>
/// <see cref="IEventBus"/> over the pub/sub component <see cref="DaprNames.Components.PubSub"/>.
/// The sidecar wraps the data in a CloudEvent; we set its <c>type</c> (through Dapr's
/// <c>cloudevent.type</c> metadata) so subscribers can route on it. The correlation id travels in the data.
/// </summary>
public sealed class DaprEventBus(DaprClient dapr) : IEventBus
{
    private const string PubSub = DaprNames.Components.PubSub;

    public async Task PublishAsync(string topic, JsonObject data, CancellationToken ct = default)
    {
        var metadata = new Dictionary<string, string> { ["cloudevent.type"] = EventTypes.For(topic) };
        try
        {
            await dapr.PublishEventAsync(PubSub, topic, data, metadata, ct);
        }
        catch (Exception e) when (SidecarFailures.IsSidecarFailure(e))
        {
            throw SidecarFailures.Translate(e, $"pub/sub '{PubSub}' (topic {topic})");
        }
    }
}
