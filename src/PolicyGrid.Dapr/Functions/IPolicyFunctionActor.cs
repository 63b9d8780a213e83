using System.Text.Json.Nodes;
using Dapr.Actors;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Dapr.Functions;

/// <summary>
/// One Type 4 function replica as a Dapr actor (app <c>policy-functions</c>). Dapr gives each actor id one turn at a
/// time, which is exactly the function's turn-based promise. Payloads travel as JSON text so the interface stays
/// serializer-neutral; failures come back as a <see cref="FunctionReply"/> carrying the contract's status and code
/// (remoting would flatten a thrown exception into a message).
/// </summary>
public interface IPolicyFunctionActor : IActor
{
    /// <summary>
    /// Loads the policy snapshot, stores it and forgets any earlier instance state of this id. A snapshot that cannot load
    /// (or whose bundle cannot be read) is a failed reply with its status and code, and changes nothing.
    /// </summary>
    Task<FunctionReply> DeployAsync(FunctionActorDeployment deployment);

    Task<FunctionReply> CallAsync(FunctionActorCall call);

    Task<FunctionReply> ManageAsync(FunctionActorManagement request);

    /// <summary>
    /// What another replica restarts from when a management action succeeded here and failed there: this replica's
    /// context and instance state (class with <c>get_state</c>), or its management journal (class without).
    /// </summary>
    Task<FunctionReply> SnapshotAsync();

    /// <summary>
    /// Restarts this replica from another's <see cref="SnapshotAsync"/>: its instance is dropped; with state, the context
    /// and state are taken over (the next call restores them with <c>set_state</c>); without, the journal is, and replayed
    /// on a fresh instance before the next call (which fails naming the entry while one fails). Saved before the answer.
    /// </summary>
    Task<FunctionReply> RestartFromAsync(FunctionActorSnapshot snapshot);

    /// <summary>Drops the instance and every piece of its state.</summary>
    Task RemoveAsync();

    Task<FunctionActorStatus> StatusAsync();
}

public sealed record FunctionActorDeployment(string Name, string PolicyJson);

/// <summary>
/// A call of the function; <paramref name="Caller"/> (who asked: a token name, "anonymous") and, for a graph node's run,
/// the graph and its run travel with it for the actor's decision log record. Empty when the sender did not say (an older
/// registry or workflow): the record's caller is then "unknown".
/// </summary>
public sealed record FunctionActorCall(string InputJson, string Caller = "", string GraphId = "", string ExecutionId = "");

public sealed record FunctionActorManagement(string Action, string DataJson);

/// <summary>
/// A replica's <see cref="IPolicyFunctionActor.SnapshotAsync"/> output, handed to another replica as it is, with the
/// management action that failed there (a read-only one restarts nothing: it changed nothing the other replica lacks).
/// </summary>
public sealed record FunctionActorSnapshot(string Action, string SnapshotJson);

public sealed record FunctionActorStatus(bool Deployed, string Name, long Calls);

/// <summary>The answer of one actor turn: the policy's output, or the failure as the contract words it.</summary>
public sealed record FunctionReply(bool Ok, string OutputJson, int Status, string Code, string Message)
{
    public static FunctionReply Success(JsonObject output) => new(true, output.ToJsonString(), 200, "", "");

    /// <summary>Seconds the caller should wait before trying again, when the failure said (a 429 or 503 <c>Retry-After</c>).</summary>
    public int? RetryAfterSeconds { get; init; }

    public static FunctionReply Failure(PolicyGridException e) => new(false, "", e.Status, e.Code, e.Message) { RetryAfterSeconds = e.RetryAfterSeconds };

    /// <summary>The output, or the failure thrown again as the exception the API maps to the envelope.</summary>
    public JsonObject Unwrap() => Ok
        ? JsonNode.Parse(OutputJson) as JsonObject ?? []
        : throw new PolicyGridException(Status, Code, Message) { RetryAfterSeconds = RetryAfterSeconds };
}

/// <summary>Names shared by the functions app, the registry's proxy and the graph workflow.</summary>
public static class FunctionActors
{
    public const string AppId = DaprNames.Apps.Functions;
    public const string ActorType = "PolicyFunctionActor";

    /// <summary>
    /// Replica <paramref name="index"/>'s actor id: the function name alone when there is one replica, else <c>name~i</c>.
    /// An actor id travels raw in URL paths, both ways: the SDK formats <c>v1.0/actors/{type}/{id}/method/{m}</c> into a
    /// <see cref="Uri"/> (dotnet-sdk src/Dapr.Actors/DaprHttpInteractor.cs, 1.18) and daprd builds
    /// <c>actors/{type}/{id}/method/{m}</c> as the URL it calls the app on (dapr/dapr
    /// pkg/actors/targets/app/transport/http/http.go, v1.18.3). A <c>#</c> there starts a fragment and a <c>?</c> a
    /// query, so an id holding one reached another path (a replica id was <c>name#i</c>), and .NET reads <c>\</c> as
    /// <c>/</c>. So none of them appears in an id: a name's <c>~</c>, <c>?</c> and <c>\</c> are written <c>~~</c>,
    /// <c>~q</c> and <c>~b</c>, and the replica index follows a lone <c>~</c> (unreserved in URLs: nothing escapes it),
    /// which no escaped name holds.
    /// </summary>
    public static ActorId Replica(string name, int index, int replicas) =>
        new(replicas <= 1 ? IdText(name) : IdText(name) + "~" + index.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>The function name of an actor id (<c>name~i</c> → <c>name</c>, escapes undone).</summary>
    public static string FunctionName(ActorId id)
    {
        var text = id.GetId();
        if (!text.Contains('~')) return text;
        var name = new System.Text.StringBuilder(text.Length);
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] != '~' || i + 1 == text.Length) { name.Append(text[i]); continue; }
            var next = text[++i];
            if (char.IsAsciiDigit(next)) break; // the replica index
            name.Append(next switch { 'q' => '?', 'b' => '\\', _ => next });
        }
        return name.ToString();
    }

    private static string IdText(string name) =>
        name.AsSpan().IndexOfAny('~', '?', '\\') < 0 ? name : name.Replace("~", "~~").Replace("?", "~q").Replace("\\", "~b");
}
