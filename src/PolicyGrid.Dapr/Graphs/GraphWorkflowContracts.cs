namespace PolicyGrid.Dapr.Graphs;

/// <summary>
/// What the registry schedules: the graph's shape (the workflow builds Core's GraphPlan from it, as the embedded
/// runner does), the replica count of each node's function, the input as JSON text and the run's limits.
/// <see cref="Executors"/> holds the executor node address of each node whose function runs on an <c>http(s)://</c>
/// executor; a node not in it is a function actor in <c>policy-functions</c> (as every node was before it existed, so
/// an instance scheduled by an older registry replays as it ran). <see cref="Caller"/>, <see cref="GraphId"/> and
/// <see cref="ExecutionId"/> say who started the run and which run it is, for the decision log record of each node's
/// call (empty from a sender that does not say: the workflow then names the run by its instance id, and the caller
/// <c>graph:&lt;execution id&gt;</c>). <see cref="DeadlineSeconds"/> is the run's deadline, counted from the workflow's
/// start (0 from an older graphs app: none), past which it starts no node (<see cref="GraphWorkflowRuns"/> sets it from
/// the request).
/// </summary>
public sealed record GraphWorkflowInput(
    IReadOnlyList<string> FunctionIds,
    IReadOnlyDictionary<string, IReadOnlyList<string>> Connections,
    IReadOnlyDictionary<string, int> Replicas,
    string InputJson,
    int MaxParallelism,
    int RetryMaxAttempts = 1,
    double RetryBackoffSeconds = 0,
    bool Trace = false,
    IReadOnlyDictionary<string, string>? Executors = null,
    string Caller = "",
    string GraphId = "",
    string ExecutionId = "",
    double DeadlineSeconds = 0);

/// <summary>
/// One node's call, handed to the activity that reaches the function: its actor, or with <see cref="ExecutorUri"/> the
/// <c>http(s)://</c> executor node it was deployed on.
/// </summary>
public sealed record NodeCallRequest(string Node, int Replicas, string InputJson, string? ExecutorUri = null,
    string Caller = "", string GraphId = "", string ExecutionId = "");

/// <summary>What the activity answers: the actor's reply and when and how long it ran.</summary>
public sealed record NodeCallResult(bool Ok, string OutputJson, int Status, string Code, string Message, DateTimeOffset StartedAt, double DurationMs);

public sealed record GraphTraceEntry(string Node, string InputJson, string OutputJson, DateTimeOffset StartedAt, double DurationMs);

/// <summary>The node that stopped the graph and its error, as the contract words it.</summary>
public sealed record GraphNodeError(string Node, int Status, string Code, string Message);

/// <summary>The workflow's output: the sink's output as JSON text, or the failing node.</summary>
public sealed record GraphWorkflowOutput(bool Ok, string ResultJson, IReadOnlyList<GraphTraceEntry> Trace, GraphNodeError? Error)
{
    public static GraphWorkflowOutput Succeeded(string resultJson, IReadOnlyList<GraphTraceEntry> trace) => new(true, resultJson, trace, null);
    public static GraphWorkflowOutput Failed(GraphNodeError error, IReadOnlyList<GraphTraceEntry> trace) => new(false, "", trace, error);
}

public static class GraphWorkflows
{
    public const string AppId = DaprNames.Apps.Graphs;
    public const string WorkflowName = "PolicyGraphWorkflow";
    public const string CallNodeActivity = "CallFunctionActivity";
}
