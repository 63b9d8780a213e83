using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Ports;

/// <summary>CloudEvent <c>type</c> values of PolicyGrid's topics, the same on the embedded bus and on Dapr pub/sub.</summary>
public static class EventTypes
{
    public const string Evaluation = "io.policygrid.evaluation.requested";
    public const string Decision = "io.policygrid.evaluation.decided";
    public const string DeadLetter = "io.policygrid.evaluation.rejected";
    public const string JobResult = "io.policygrid.job.finished";
    public const string PolicyGone = "io.policygrid.policy.gone";

    public static string For(string topic) => topic switch
    {
        Topics.Evaluations => Evaluation,
        Topics.Decisions => Decision,
        Topics.DeadLetter => DeadLetter,
        Topics.JobResults => JobResult,
        Topics.PolicyEvents => PolicyGone,
        _ => "io.policygrid." + topic,
    };

    /// <summary>The data field that ties a decision to the evaluation request it answers.</summary>
    public const string CorrelationId = "correlation_id";
}

/// <summary>One event as a bus delivered it: enough to render it as a CloudEvent.</summary>
public sealed record PublishedEvent(string Id, string Topic, string Type, DateTimeOffset Time, JsonObject Data)
{
    public string? CorrelationId => Data[EventTypes.CorrelationId] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
}

/// <summary>
/// Reading what was published, for shapes where the bus lives in our own process (embedded
/// <c>serve</c>). On Dapr, subscribers read their broker instead and no feed is registered.
/// </summary>
public interface IEventFeed
{
    /// <summary>
    /// Events of a topic (optionally only those with a correlation id), oldest first. When none is there
    /// yet, waits up to <paramref name="wait"/> for the first one to arrive.
    /// </summary>
    Task<IReadOnlyList<PublishedEvent>> ReadAsync(string topic, string? correlationId, TimeSpan wait, CancellationToken ct = default);
}
