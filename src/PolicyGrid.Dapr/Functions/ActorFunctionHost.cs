using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Dapr.Actors.Client;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Invocation;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Transports;

namespace PolicyGrid.Dapr.Functions;

/// <summary>
/// The registry's view of functions in the Dapr shape: every replica is a <see cref="IPolicyFunctionActor"/> in
/// <c>policy-functions</c>, reached through an actor proxy. Calls pick a replica at random (Dapr queues an actor's
/// calls; picking spreads the load); management and removal reach every replica.
/// </summary>
public sealed class ActorFunctionHost(IActorProxyFactory actors, IDocumentStore store, IOptions<PolicyRuntimeOptions>? runtime = null) : IFunctionHost
{
    /// <summary>
    /// How long the proxy waits for an actor's answer: the longest policy deadline (<c>Execution:MaxTimeout</c>) plus the
    /// network's share and the sidecar's retries, as for a <c>dapr://</c> executor. The SDK's default (100 s) cut longer
    /// calls short with a 503 while the actor was still running them.
    /// </summary>
    public TimeSpan RequestTimeout { get; } = Bound(runtime?.Value ?? new PolicyRuntimeOptions());

    /// <summary>The <see cref="RequestTimeout"/> for these options: also what the graph workflow's proxies wait.</summary>
    public static TimeSpan Bound(PolicyRuntimeOptions options) =>
        options.Execution.MaxTimeout + options.RemoteExecutors.Overhead + DaprExecutorTransport.RetryRoom;

    // The factory's own options (sidecar endpoint, API token, JSON remoting) with that timeout.
    private readonly ActorProxyOptions _proxyOptions = WithTimeout(
        (actors as ActorProxyFactory)?.DefaultOptions ?? new ActorProxyOptions { UseJsonSerialization = true },
        Bound(runtime?.Value ?? new PolicyRuntimeOptions()));

    private static ActorProxyOptions WithTimeout(ActorProxyOptions defaults, TimeSpan timeout) => new()
    {
        JsonSerializerOptions = defaults.JsonSerializerOptions,
        DaprApiToken = defaults.DaprApiToken,
        HttpEndpoint = defaults.HttpEndpoint,
        UseJsonSerialization = defaults.UseJsonSerialization,
        RequestTimeout = timeout,
    };

    // Replica counts of functions this registry deployed or looked up, so a call reads no document.
    private readonly ConcurrentDictionary<string, int> _replicas = new(StringComparer.Ordinal);

    public async Task DeployAsync(FunctionSpec spec, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var replicas = Math.Max(1, spec.Scale.Initial);
        var deployment = new FunctionActorDeployment(spec.Name, spec.Policy.ToJsonString());
        var replies = await Task.WhenAll(Enumerable.Range(0, replicas).Select(i => Reach(() => Actor(spec.Name, i, replicas).DeployAsync(deployment))));
        // A replica that could not load its policy answers why (422 policy_error, the bundle's 404...), as a call does.
        foreach (var reply in replies) reply.Unwrap();
        _replicas[spec.Name] = replicas;
    }

    /// <summary>The actors record every call that reaches them in the decision log (policy-functions keeps one).</summary>
    public bool RecordsCalls => true;

    // A call whose sender did not say who asked: the actor records the caller as "unknown", not as an anonymous user.
    private static readonly FunctionCallOrigin Untold = new("");

    public Task<JsonObject> CallAsync(string name, JsonNode? input, CancellationToken ct = default) => CallAsync(name, input, Untold, ct);

    public async Task<JsonObject> CallAsync(string name, JsonNode? input, FunctionCallOrigin origin, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(origin);
        var replicas = await ReplicasAsync(name, ct);
        var call = new FunctionActorCall(input?.ToJsonString() ?? "{}", origin.Caller, origin.GraphId, origin.ExecutionId);
        var reply = await Reach(() => Actor(name, Random.Shared.Next(replicas), replicas).CallAsync(call));
        return Answer(reply);
    }

    /// <summary>
    /// The actor's reply, its failure thrown as the contract's exception. An actor's own 503 (its policy's status or its
    /// state unreadable, its workers unavailable) is a <see cref="NodeUnavailable"/>: the call reached the actor, which
    /// recorded it, and the functions app answered, so it is up. As a plain 503 it read as the app unreachable: the
    /// registry recorded the call a second time and marked the executor down.
    /// </summary>
    private static JsonObject Answer(FunctionReply reply) =>
        reply is { Ok: false, Status: 503, Code: ErrorCodes.BackendUnavailable } ? throw NodeUnavailable.Answered(reply.Message, reply.RetryAfterSeconds) : reply.Unwrap();


    /// <summary>
    /// Runs on replica 0 first: its failure is the answer and no other replica runs the action. Then on every other
    /// replica; one where it fails is named in the answer (the failure's status), never left silently without it.
    /// </summary>
    public async Task<JsonObject> ManageAsync(string name, string action, JsonObject data, CancellationToken ct = default)
    {
        var replicas = await ReplicasAsync(name, ct);
        var request = new FunctionActorManagement(action, data.ToJsonString());
        var first = Answer(await Reach(() => Actor(name, 0, replicas).ManageAsync(request)));
        var failures = new List<(int Index, PolicyGridException Error)>();
        for (var i = 1; i < replicas; i++)
        {
            try
            {
                (await Reach(() => Actor(name, i, replicas).ManageAsync(request))).Unwrap();
            }
            catch (PolicyGridException e) when (e.Code is ErrorCodes.PolicyError or ErrorCodes.PolicyTimeout)
            {
                // The policy failed there (raised, or ran out of time): that replica restarts from replica 0's state, or
                // takes its journal (class without get_state), as serve restarts an instance from the first one's.
                if (!await RestartFromFirstAsync(name, i, replicas, action)) failures.Add((i, e));
            }
            catch (PolicyGridException e)
            {
                failures.Add((i, e));
            }
        }
        if (failures.Count == 0) return first;
        var (_, error) = failures[0];
        throw new PolicyGridException(error.Status, error.Code,
            $"function {name}: management '{action}' succeeded on {replicas - failures.Count} of {replicas} instances and failed on " +
            string.Join("; ", failures.Select(f => $"instance #{f.Index} ({f.Error.Message})")) +
            ": those instances do not have it; send it again, or redeploy the function");
    }

    private async Task<bool> RestartFromFirstAsync(string name, int index, int replicas, string action)
    {
        try
        {
            var snapshot = (await Reach(() => Actor(name, 0, replicas).SnapshotAsync())).Unwrap();
            (await Reach(() => Actor(name, index, replicas).RestartFromAsync(new FunctionActorSnapshot(action, snapshot.ToJsonString())))).Unwrap();
            return true;
        }
        catch (PolicyGridException)
        {
            return false;
        }
    }

    public async Task<bool> RemoveAsync(string name, CancellationToken ct = default)
    {
        var replicas = await ReplicasAsync(name, ct);
        await Task.WhenAll(Enumerable.Range(0, replicas).Select(i => Reach(() => Actor(name, i, replicas).RemoveAsync())));
        _replicas.TryRemove(name, out _);
        return true;
    }

    public async Task<FunctionHostStatus?> StatusAsync(string name, CancellationToken ct = default)
    {
        var replicas = await ReplicasAsync(name, ct);
        var status = await Reach(() => Actor(name, 0, replicas).StatusAsync());
        return status.Deployed ? new FunctionHostStatus(name, replicas, 0, 0, status.Calls) : null;
    }

    private IPolicyFunctionActor Actor(string name, int index, int replicas) =>
        actors.CreateActorProxy<IPolicyFunctionActor>(FunctionActors.Replica(name, index, replicas), FunctionActors.ActorType,
            _proxyOptions);

    private async Task<int> ReplicasAsync(string name, CancellationToken ct)
    {
        if (_replicas.TryGetValue(name, out var known)) return known;
        var stored = await store.GetAsync(Collections.Functions, name, ct) ?? throw Problems.NotFound($"function '{name}' is not deployed");
        return _replicas[name] = Math.Max(1, FunctionDeployment.FromJson(stored.Body).Replicas);
    }

    /// <summary>An unreachable sidecar or functions app is a 503, not a 500; so is an actor that did not answer in time.</summary>
    private static async Task<T> Reach<T>(Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (OperationCanceledException e)
        {
            // The proxy is given no token: this is its own HttpClient timeout, which escaped as a 500. A 503, as the graph
            // workflow's call of the same actor answers it (CallFunctionActivity).
            throw Problems.BackendUnavailable($"function actor did not answer in time: {e.Message}", e);
        }
        catch (Exception e) when (e is not PolicyGridException)
        {
            throw Problems.BackendUnavailable($"the functions app ({FunctionActors.AppId}) could not be reached: {e.Message}", e);
        }
    }

    private static Task Reach(Func<Task> call) => Reach(async () => { await call(); return true; });
}

/// <summary>Functions on <c>dapr://</c> executors live in the functions app as actors.</summary>
public sealed class ActorFunctionHostTransport(ActorFunctionHost host) : IFunctionHostTransport
{
    public bool CanHandle(Uri executorHostUri) => executorHostUri.Scheme == DaprNames.UriScheme;

    public IFunctionHost For(Uri executorHostUri) => host;
}
