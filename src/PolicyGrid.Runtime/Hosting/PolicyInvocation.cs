using System.Text.Json.Nodes;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Bundles;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>What a worker needs to create a policy instance: <c>AIOSv1PolicyRule(rule_id, settings, parameters)</c> from the bundle.</summary>
public sealed record PolicyLoadSpec(string RuleId, BundleDirectory Bundle, JsonObject Settings, JsonObject Parameters)
{
    /// <summary>
    /// The instance made from this spec is never dropped to make room (past <see cref="WorkerPoolOptions.MaxInstancesPerWorker"/>)
    /// nor routed afresh: only a release, or the end of its worker, ends it. For the one instance of its owner, changed by
    /// management commands, which only a replay of all of them rebuilds (an SDK evaluator's own: <see cref="ManagementJournal"/>);
    /// instances that are cheap to rebuild (Type 4, from their saved state) are dropped least recently used first.
    /// </summary>
    public bool Pinned { get; init; }
}

/// <summary>
/// One call into a warm policy instance. <paramref name="InstanceKey"/> names the instance: the same
/// key always reaches the same live instance (created from <paramref name="Load"/> on first use, or
/// again after its worker was replaced, in which case <paramref name="RestoreState"/> is handed to
/// <c>set_state</c> before the method runs). <paramref name="Method"/> is one of <see cref="PolicyMethods"/>.
/// </summary>
public sealed record PolicyInvocation(
    string InstanceKey,
    PolicyLoadSpec Load,
    string Method,
    JsonObject Arguments,
    TimeSpan Deadline,
    JsonObject? RestoreState = null)
{
    /// <summary>
    /// How long the call's caller waits (a node's <c>X-PolicyGrid-Timeout-Ms</c>); null (most calls) when it may start
    /// whenever its worker gets to it. A call still queued for its worker, or already written to the worker behind
    /// other requests, when the budget runs out is not started: 504 <c>policy_timeout</c> (<see cref="CallBudget.RanOut"/>
    /// naming it <see cref="Call"/>), and it has no effect.
    /// </summary>
    public CallBudget? Budget { get; init; }

    /// <summary>
    /// The instance is long-lived and holds what its calls did (a Type 4 function's replica, an SDK evaluator's instance
    /// whose management commands changed it): its group is then never stopped for being idle
    /// (<see cref="WorkerPoolOptions.IdleStopAfter"/>), only when its policy is gone or another policy needs the room.
    /// </summary>
    public bool KeepsWarm { get; init; }

    /// <summary>
    /// Asked before the call is sent when it waited in the pool for its worker (<see cref="Hosting.StartCheck"/>): the
    /// caller's way to stop a queued call whose policy was retired or deleted meanwhile. Null: it starts whenever its
    /// worker gets to it.
    /// </summary>
    public StartCheck? StartCheck { get; init; }

    /// <summary>
    /// For <see cref="PythonWorkerPool.InvokeWithStateAsync"/>: false runs no <c>get_state()</c> after the method (the answer's
    /// <see cref="PolicyAnswer.State"/> is null and <see cref="PolicyAnswer.KeepsState"/> false), for a caller that needs
    /// only <see cref="PolicyAnswer.Created"/> on this call and not the cost of writing the instance's state.
    /// </summary>
    public bool TakesState { get; init; } = true;

    /// <summary>How the 504 of a call not started names it ("call of policy ..."); by default from <see cref="PolicyLoadSpec.RuleId"/>.</summary>
    public string? Call { get; init; }

    internal string Describe() => Call ?? $"call of policy {Load.RuleId}";
}

/// <summary>
/// What <see cref="PythonWorkerPool.InvokeWithStateAsync"/> answers: the method's <paramref name="Value"/> and, from the
/// same round trip, the instance's <c>get_state()</c> right after it. <paramref name="KeepsState"/> is false when the
/// class has no <c>get_state</c> (then <paramref name="State"/> is null); <paramref name="State"/> is a dict or null (None, no
/// state yet): the worker refuses any other answer of <c>get_state()</c>. <paramref name="Created"/> is true when this
/// call created the instance (first use, or again after its worker was replaced or it was evicted), so a caller that
/// must replay something on a new instance knows the method ran without it.
/// </summary>
public sealed record PolicyAnswer(JsonNode? Value, bool KeepsState, JsonObject? State, bool Created = false);

/// <summary>The methods a worker can call on an instance, and the argument names each takes.</summary>
public static class PolicyMethods
{
    /// <summary>Arguments <c>parameters, input_data, context</c>; answers <c>{"result", "context"}</c>.</summary>
    public const string Eval = "eval";
    /// <summary>Arguments <c>action, data</c>; answers what <c>management</c> returned.</summary>
    public const string Management = "management";
    /// <summary>No arguments; answers what <c>get_state()</c> returned, or null when the class has none.</summary>
    public const string GetState = "get_state";
    /// <summary>Argument <c>state</c>.</summary>
    public const string SetState = "set_state";
    /// <summary>Only creates the instance (used by dry loads).</summary>
    public const string Load = "load";

    public static readonly IReadOnlySet<string> All = new HashSet<string>(StringComparer.Ordinal) { Eval, Management, GetState, SetState, Load };
}
