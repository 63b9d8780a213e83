using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Ports;

/// <summary>Topics shared by the embedded bus and Dapr pub/sub.</summary>
public static class Topics
{
    public const string Evaluations = "policy-evaluations";
    public const string Decisions = "policy-decisions";
    public const string DeadLetter = "policy-evaluations-deadletter";
    public const string JobResults = "policy-job-results";

    /// <summary>
    /// A policy was deleted or retired: <c>{"policy_rule_uri": ..., "change": "deleted" | "retired"}</c>, published by the
    /// registry so the apps that run policies (the Dapr executor and functions apps) give back its workers and parsed document.
    /// </summary>
    public const string PolicyEvents = "policy-events";
}

/// <summary>Publishes evaluation requests and results. Embedded: in-process channel; Dapr: pub/sub.</summary>
public interface IEventBus
{
    Task PublishAsync(string topic, JsonObject data, CancellationToken ct = default);
}
