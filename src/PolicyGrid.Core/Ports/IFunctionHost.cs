using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Ports;

/// <summary>
/// How many instances a function runs. <see cref="Replicas"/> is the fixed count; with
/// <see cref="Autoscale"/> the host moves between <see cref="MinReplicas"/> and <see cref="MaxReplicas"/>
/// by queue depth (embedded) or by CPU through an HPA (Kubernetes).
/// </summary>
public sealed record FunctionScale(int Replicas, bool Autoscale = false, int MinReplicas = 1, int MaxReplicas = 1)
{
    public static readonly FunctionScale Single = new(1);

    /// <summary>Instances to start with: the replica count, kept inside the autoscaling bounds.</summary>
    public int Initial => Autoscale ? Math.Clamp(Replicas, MinReplicas, MaxReplicas) : Replicas;
}

/// <summary>
/// What a host needs to run a function: its name (the function id), the policy snapshot it was
/// deployed with (a PolicyRule document whose <c>policy_parameters</c> already include the deployment's
/// overrides) and its scale.
/// </summary>
public sealed record FunctionSpec(string Name, JsonObject Policy, FunctionScale Scale)
{
    public string PolicyRuleUri => Policy["policy_rule_uri"]?.GetValue<string>() ?? "";

    /// <summary>
    /// Checks a call's input against the snapshot's <c>policy_input_schema</c>, as a Type 2 call is checked: a 400
    /// naming <c>input_data.…</c> paths, before the policy sees it. Hosts call it on every call.
    /// </summary>
    public static void EnsureValidInput(JsonObject policy, JsonNode? input)
    {
        ArgumentNullException.ThrowIfNull(policy);
        if (policy["policy_input_schema"] is JsonObject { Count: > 0 } schema) Templates.TemplateValidator.Ensure(schema, input, "input_data");
    }

    /// <summary>Checks a management call against the snapshot's <c>management_commands_schema</c>, as Type 2 does. Hosts call it on every call.</summary>
    public static void EnsureKnownCommand(JsonObject policy, string action, JsonNode? data)
    {
        ArgumentNullException.ThrowIfNull(policy);
        Templates.ManagementCommands.Ensure(policy["management_commands_schema"] as JsonArray, policy["policy_rule_uri"]?.GetValue<string>() ?? "", action, data);
    }

    /// <summary>
    /// The 409 both hosts answer when a function whose class has no <c>get_state</c> already keeps
    /// <paramref name="entries"/> management actions to replay (<c>PolicyGrid:Functions:MaxJournalEntries</c>).
    /// </summary>
    public static Errors.PolicyGridException JournalFull(string function, int entries) =>
        Errors.Problems.Conflict($"function {function}: {entries} management actions are kept to replay " +
            "(the limit, PolicyGrid:Functions:MaxJournalEntries) because the policy class has no get_state; " +
            "give it get_state/set_state, declare the commands that change nothing read_only in its management_commands_schema, or redeploy to start afresh");

    /// <summary>
    /// What eval answered, as Type 2 and the SDKs take it: the dict, or a 422 naming what it was instead ("None", "a list").
    /// Hosts check it before they keep the context the call left: like a Type 2 call, one that answers no dict saves none
    /// of it (the message used to say "not Array").
    /// </summary>
    public static JsonObject EvalAnswer(JsonNode? result, string function) =>
        result as JsonObject ?? throw Errors.Problems.PolicyError($"function {function}: eval returned {Described(result)}, not a dict");

    /// <summary>
    /// What management answered, as Type 2 and the SDKs answer it: the dict, <c>{}</c> for None, and a 422 naming anything
    /// else (it used to be answered 200 as <c>{"result": ...}</c>, and None as <c>{"result": null}</c>). Hosts check it
    /// before they journal the action, so such an answer fails as a management that raised does (nothing journalled).
    /// </summary>
    public static JsonObject ManagementAnswer(JsonNode? reply, string function, string action) => reply switch
    {
        null => [],
        JsonObject answer => answer,
        _ => throw Errors.Problems.PolicyError($"function {function}: management '{action}' returned {Described(reply)}, not a dict"),
    };

    /// <summary>An answer that is no dict, in the servers' words ("None", "a list", "a string").</summary>
    public static string Described(JsonNode? node) => node switch
    {
        null => "None",
        JsonArray => "a list",
        JsonValue v => $"a {v.GetValueKind().ToString().ToLowerInvariant()}",
        _ => "a dict",
    };

    /// <summary>Whether the snapshot's <c>management_commands_schema</c> declares the action <c>read_only</c> (never journalled).</summary>
    public static bool IsReadOnlyCommand(JsonObject policy, string action)
    {
        ArgumentNullException.ThrowIfNull(policy);
        return Templates.ManagementCommands.IsReadOnly(policy["management_commands_schema"] as JsonArray, action);
    }
}

/// <summary>
/// What a host reports about one deployed function right now; where it knows them, the policy the function runs and the
/// bundle it loaded (what an executor node's decision log records of the calls it runs).
/// </summary>
public sealed record FunctionHostStatus(string Name, int Instances, int Busy, int Queued, long Calls, string PolicyRuleUri = "", string BundleSha256 = "");

/// <summary>
/// Runs Type 4 functions: long-lived, stateful, turn-based policy instances called by name.
/// Embedded: the in-process host on the worker pool; Dapr: an actor proxy to <c>PolicyFunctionActor</c>;
/// remote: an executor node's deployment routes. Unknown names are a 404 <see cref="Errors.PolicyGridException"/>.
/// </summary>
public interface IFunctionHost
{
    /// <summary>Starts the function (or replaces a deployment of the same name, keeping nothing of it).</summary>
    Task DeployAsync(FunctionSpec spec, CancellationToken ct = default);

    /// <summary>Runs <c>eval</c> on one instance and answers what it returned.</summary>
    Task<JsonObject> CallAsync(string name, JsonNode? input, CancellationToken ct = default);

    /// <summary>Runs <c>management(action, data)</c> on the live instance (every replica, answering the first's result).</summary>
    Task<JsonObject> ManageAsync(string name, string action, JsonObject data, CancellationToken ct = default);

    /// <summary>
    /// <see cref="CallAsync(string, JsonNode?, CancellationToken)"/> for a caller that waits no longer than <paramref name="budget"/>:
    /// a host that queues calls does not start one whose budget ran out while it waited (504, no effect). Hosts that
    /// do not queue calls themselves take the plain call.
    /// </summary>
    Task<JsonObject> CallAsync(string name, JsonNode? input, CallBudget? budget, CancellationToken ct) => CallAsync(name, input, ct);

    /// <summary><see cref="ManageAsync(string, string, JsonObject, CancellationToken)"/> within <paramref name="budget"/>, as <see cref="CallAsync(string, JsonNode?, CallBudget?, CancellationToken)"/>.</summary>
    Task<JsonObject> ManageAsync(string name, string action, JsonObject data, CallBudget? budget, CancellationToken ct) => ManageAsync(name, action, data, ct);

    /// <summary>Stops the function, frees its instances and forgets its state; false when it was not deployed.</summary>
    Task<bool> RemoveAsync(string name, CancellationToken ct = default);

    /// <summary>The function's live status, or null when the host does not run it.</summary>
    Task<FunctionHostStatus?> StatusAsync(string name, CancellationToken ct = default);

    /// <summary>
    /// Whether the host records each call (eval) it runs in the caller's decision log itself (the Dapr function actors
    /// write to the store the registry's log writes to, and so record graph nodes the workflow calls directly); the
    /// registry then records only the calls it refuses before the host. Management is recorded by the registry, which
    /// alone knows how an action sent to every replica ended.
    /// </summary>
    bool RecordsCalls => false;

    /// <summary>A call made for <paramref name="origin"/>: a host that <see cref="RecordsCalls"/> records it with it; others take the plain call.</summary>
    Task<JsonObject> CallAsync(string name, JsonNode? input, FunctionCallOrigin origin, CancellationToken ct) => CallAsync(name, input, ct);

}

/// <summary>
/// Reaches the function host of one executor URI scheme (<c>inproc://</c>, <c>http(s)://</c>, <c>dapr://</c>),
/// as <see cref="IExecutorTransport"/> does for Type 2.
/// </summary>
public interface IFunctionHostTransport
{
    bool CanHandle(Uri executorHostUri);
    IFunctionHost For(Uri executorHostUri);
}

/// <summary>
/// Calls a deployed function by id wherever it lives (the registry resolves its executor). Graph runners
/// use it so that a graph's nodes may sit on different executors.
/// </summary>
public interface IFunctionInvoker
{
    Task<JsonObject> CallAsync(string functionId, JsonNode? input, CancellationToken ct = default);

    /// <summary>
    /// A call made for <paramref name="origin"/> (who started it; for a graph node, which graph run), as the decision
    /// log records it. Invokers that keep no decision log take the plain call.
    /// </summary>
    Task<JsonObject> CallAsync(string functionId, JsonNode? input, FunctionCallOrigin origin, CancellationToken ct) => CallAsync(functionId, input, ct);
}

/// <summary>
/// Who a function call is made for, as the decision log records it: the caller (a token name or "anonymous"), and for
/// a graph node's run the graph and the run (<see cref="GraphId"/> the graph URI, <see cref="ExecutionId"/> the run).
/// </summary>
public sealed record FunctionCallOrigin(string Caller, string GraphId = "", string ExecutionId = "")
{
    public static readonly FunctionCallOrigin Anonymous = new(CallerIdentity.Anonymous.Name);
}
