using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Ports;

/// <summary>The execute_policy body of the contract (Type 2), as the registry forwards it to an executor node.</summary>
public sealed record ExecutionRequest(
    string PolicyRuleUri,
    JsonObject InputData,
    JsonObject? Parameters = null,
    JsonObject? Settings = null,
    string? ContextKey = null,
    double? TimeoutSeconds = null)
{
    /// <summary>
    /// How long the caller waits (a node's <c>X-PolicyGrid-Timeout-Ms</c>): a call that waited for its context's lock
    /// (behind other calls on the same context), or for a policy worker, past it is not started. Not part of the body.
    /// </summary>
    public CallBudget? Budget { get; init; }

    /// <summary>The node API body (POST /execute_policy), as every transport sends it; absent options stay absent.</summary>
    public JsonObject ToNodeBody()
    {
        var body = new JsonObject { ["policy_rule_uri"] = PolicyRuleUri, ["input_data"] = InputData.DeepClone() };
        if (Parameters is not null) body["parameters"] = Parameters.DeepClone();
        if (Settings is not null) body["settings"] = Settings.DeepClone();
        if (ContextKey is not null) body["context_key"] = ContextKey;
        if (TimeoutSeconds is not null) body["timeout_seconds"] = TimeoutSeconds;
        return body;
    }
}

/// <summary>The management body: runs <c>management(action, data)</c> on a fresh instance.</summary>
public sealed record ManagementRequest(
    string PolicyRuleUri,
    string Action,
    JsonObject Data,
    JsonObject? Parameters = null,
    JsonObject? Settings = null,
    double? TimeoutSeconds = null)
{
    /// <summary>
    /// How long the caller waits (a node's <c>X-PolicyGrid-Timeout-Ms</c>): an action still waiting for a policy worker
    /// (all busy) past it is not started. Not part of the body.
    /// </summary>
    public CallBudget? Budget { get; init; }

    /// <summary>The node API body (POST /management), as every transport sends it.</summary>
    public JsonObject ToNodeBody()
    {
        var body = new JsonObject { ["policy_rule_uri"] = PolicyRuleUri, ["action"] = Action, ["data"] = Data.DeepClone() };
        if (Parameters is not null) body["parameters"] = Parameters.DeepClone();
        if (Settings is not null) body["settings"] = Settings.DeepClone();
        if (TimeoutSeconds is not null) body["timeout_seconds"] = TimeoutSeconds;
        return body;
    }
}

/// <summary>Who asked, for the decision log: a token name or "anonymous".</summary>
public sealed record CallerIdentity(string Name)
{
    public static readonly CallerIdentity Anonymous = new("anonymous");
}

/// <summary>
/// Runs a policy once (Type 2). Embedded: the local worker pool; remote: an executor node over
/// HTTP; Dapr: service invocation to <c>policy-executor</c>. Failures are <see cref="Errors.PolicyGridException"/>s
/// with the contract's status and code (410 retired, 422 policy_error, 504 policy_timeout, ...).
/// </summary>
public interface IPolicyExecutor
{
    Task<PolicyResult> ExecuteAsync(ExecutionRequest request, CallerIdentity caller, CancellationToken ct = default);
    Task<PolicyResult> ManageAsync(ManagementRequest request, CallerIdentity caller, CancellationToken ct = default);
}

/// <summary>What the policy returned, and whether the policy is deprecated (the API adds a Deprecation header).</summary>
public sealed record PolicyResult(JsonObject Output, bool Deprecated = false)
{
    /// <summary>What the call asked that had no effect, said in the answer's <c>warnings</c> (the call still ran).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];
}

/// <summary>
/// Reaches executors of one URI scheme: <c>inproc://</c> (the local pool), <c>http(s)://</c> (a remote
/// executor node), <c>dapr://app-id</c> (service invocation). The API picks the transport from the
/// executor document's executor_host_uri; each shape registers the transports it has.
/// </summary>
public interface IExecutorTransport
{
    bool CanHandle(Uri executorHostUri);
    IPolicyExecutor For(Uri executorHostUri);
}
