using System.Text.Json.Nodes;
using System.Threading.Channels;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Embedded.Events;

/// <summary>
/// The embedded server's pub/sub: topics live in this process. Subscribers get a channel of
/// everything published after they subscribed; <see cref="IEventFeed"/> readers see the most recent
/// events of each topic (a bounded window, so memory stays flat) and may wait for the first one.
/// Nothing survives a restart — the embedded shape's events are for watching the flow, and
/// decisions are also in the decision log.
/// </summary>
public sealed class InProcessEventBus(TimeProvider clock) : IEventBus, IEventFeed
{
    public const int RetainedPerTopic = 1000;

    private readonly object gate = new();
    private readonly Dictionary<string, LinkedList<PublishedEvent>> recent = new(StringComparer.Ordinal);
    private readonly List<(string Topic, Channel<PublishedEvent> Channel)> subscribers = [];
    private TaskCompletionSource published = NewSignal();

    public Task PublishAsync(string topic, JsonObject data, CancellationToken ct = default)
    {
        var e = new PublishedEvent(Guid.NewGuid().ToString(), topic, EventTypes.For(topic), clock.GetUtcNow(), (JsonObject)data.DeepClone());
        TaskCompletionSource signal;
        lock (gate)
        {
            if (!recent.TryGetValue(topic, out var list)) recent[topic] = list = new LinkedList<PublishedEvent>();
            list.AddLast(e);
            if (list.Count > RetainedPerTopic) list.RemoveFirst();
            foreach (var (t, channel) in subscribers)
                if (t == topic) channel.Writer.TryWrite(e);
            signal = published;
            published = NewSignal();
        }
        signal.TrySetResult();
        return Task.CompletedTask;
    }

    /// <summary>Everything published to <paramref name="topic"/> from now on, until the token is cancelled.</summary>
    public ChannelReader<PublishedEvent> Subscribe(string topic, CancellationToken ct)
    {
        var channel = Channel.CreateUnbounded<PublishedEvent>(new UnboundedChannelOptions { SingleReader = true });
        var entry = (topic, channel);
        lock (gate) subscribers.Add(entry);
        ct.Register(() =>
        {
            lock (gate) subscribers.Remove(entry);
            channel.Writer.TryComplete();
        });
        return channel.Reader;
    }

    public async Task<IReadOnlyList<PublishedEvent>> ReadAsync(string topic, string? correlationId, TimeSpan wait, CancellationToken ct = default)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(wait);
        while (true)
        {
            Task next;
            lock (gate)
            {
                var found = recent.TryGetValue(topic, out var list)
                    ? list.Where(e => correlationId is null || e.CorrelationId == correlationId).ToList()
                    : [];
                if (found.Count > 0 || wait <= TimeSpan.Zero) return found;
                next = published.Task;
            }
            try
            {
                await next.WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                return []; // waited the whole time; nothing came
            }
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
