using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Ports;

/// <summary>Topics shared by the embedded bus and Dapr pub/sub.</summary>
public static class Topics
{
    public const string Evaluations = "policy-evaluations";
    public const string Decisions = "policy-decisions";
    public const string DeadLetter = "policy-evaluations-deadletter";
    public const string JobResults = "policy-job-results";
}

/// <summary>Publishes evaluation requests and results. Embedded: in-process channel; Dapr: pub/sub.</summary>
public interface IEventBus
{
    Task PublishAsync(string topic, JsonObject data, CancellationToken ct = default);
}
