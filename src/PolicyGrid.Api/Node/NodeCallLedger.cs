using System.Text;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Node;

/// <summary>
/// Runs a node call that carries a call id (<see cref="Header"/>) at most once. Service invocation retries a call
/// whose connection failed (daprd on gRPC UNAVAILABLE), and a connection can fail after the call reached this node:
/// the retry then ran the policy a second time (a rate limiter counted one request twice). A call with an id this
/// node has seen from the same caller gets the first run's answer instead, waiting for it while it still runs;
/// the run itself no longer stops when its first request goes away, so the answer is there for the retry.
/// Evaluation events are run through it too, by event id: a pub/sub redelivery of an event this node ran gets the
/// same decision. The server's stop still ends such a run (<see cref="ServerStop"/>), shortly before the host closes
/// its connection, so its caller hears the 503 saying the server is stopping and the node's decision log records it.
/// </summary>
/// <remarks>
/// Kept for <see cref="Keep"/> after the run ends, at most <see cref="MaxKept"/> ended calls holding
/// <see cref="MaxKeptBytes"/> of answers. An answer saying the
/// policy did not run or its effects were not kept (429 overloaded, 503 unavailable) is not kept: the retry runs
/// anew. The same id with a different body is a 409: the id names one call.
/// </remarks>
public sealed class NodeCallLedger(TimeProvider clock, ServerStop? serverStop = null)
{
    public const string Header = PolicyGrid.Runtime.Transports.NodeHeaders.CallId;
    public const int MaxIdLength = 128;
    public static readonly TimeSpan Keep = TimeSpan.FromMinutes(5);
    public const int MaxKept = 4096;

    /// <summary>The answers kept hold at most this much JSON: past it the oldest are forgotten first.</summary>
    public const long MaxKeptBytes = 64L << 20;

    private sealed record Entry(string BodyHash, Task<PolicyResult> Outcome);

    private readonly Lock gate = new();
    private readonly Dictionary<string, Entry> entries = new(StringComparer.Ordinal);
    private readonly Queue<(string Key, long EndedAt, int Bytes)> ended = new();
    private long keptBytes;

    /// <summary>How much answer JSON is kept at most (<see cref="MaxKeptBytes"/> unless set).</summary>
    public long KeptBytesLimit { get; init; } = MaxKeptBytes;

    /// <summary>
    /// Runs <paramref name="run"/> unless a call with this id (from this caller, of this kind) ran or runs here; then
    /// answers that call's outcome. Without an id the call simply runs, tied to <paramref name="ct"/>.
    /// <paramref name="reused"/> is the 409's message when the id already named another request (by default it names
    /// the <see cref="Header"/> the id came in).
    /// </summary>
    public async Task<PolicyResult> RunOnceAsync(string? callId, string kind, CallerIdentity caller, string bodyHash,
        Func<CancellationToken, Task<PolicyResult>> run, CancellationToken ct, string? reused = null)
    {
        if (callId is null) return await run(ct);
        var key = $"{kind}\n{caller.Name}\n{callId}";
        TaskCompletionSource<PolicyResult>? mine = null;
        Entry? seen;
        lock (gate)
        {
            Prune();
            if (!entries.TryGetValue(key, out seen))
            {
                mine = new TaskCompletionSource<PolicyResult>(TaskCreationOptions.RunContinuationsAsynchronously);
                entries[key] = new Entry(bodyHash, mine.Task);
            }
        }
        if (seen is not null)
        {
            if (seen.BodyHash != bodyHash)
                throw Problems.Conflict(reused ?? $"{Header} '{callId}' was already used for a different {kind} request; an id names one call, so a new call needs a new id");
            return Copy(await seen.Outcome.WaitAsync(ct));
        }
        // Not stopped by this request's end: a retry after a dropped connection is to find the answer. The server's stop
        // does end it: left running, it was cut when the process ended, its caller told only that the connection dropped
        // and its decision lost ("arrived after the log closed").
        try
        {
            var result = await run(serverStop?.CallsEnding ?? CancellationToken.None);
            mine!.SetResult(result);
            Ended(key, Encoding.UTF8.GetByteCount(result.Output.ToJsonString()));
            return Copy(result);
        }
        catch (PolicyGridException e) when (Events.EvaluationEventHandler.IsTransient(e))
        {
            lock (gate) entries.Remove(key);
            mine!.SetException(e);
            _ = mine.Task.Exception; // observed: no duplicate may ever come for it
            throw;
        }
        catch (Exception e)
        {
            mine!.SetException(e);
            _ = mine.Task.Exception; // observed: no duplicate may ever come for it
            Ended(key, e.Message.Length);
            throw;
        }
    }

    // Each answer gets its own output: the envelope takes it as its own.
    private static PolicyResult Copy(PolicyResult result) => result with { Output = (System.Text.Json.Nodes.JsonObject)result.Output.DeepClone() };

    /// <summary>A call id as given in <see cref="Header"/>; a 400 naming the header when it is not one.</summary>
    public static string Checked(string callId)
    {
        if (callId.Length is 0 or > MaxIdLength || callId.Any(c => c is < '!' or > '~'))
            throw Problems.Validation(Header, $"must be 1 to {MaxIdLength} visible ASCII characters (a UUID does)");
        return callId;
    }

    private void Ended(string key, int bytes)
    {
        lock (gate)
        {
            ended.Enqueue((key, clock.GetTimestamp(), bytes));
            keptBytes += bytes;
            Prune();
        }
    }

    // Under the gate: forgets ended calls past Keep, and the oldest beyond MaxKept or MaxKeptBytes.
    private void Prune()
    {
        var now = clock.GetTimestamp();
        while (ended.TryPeek(out var oldest)
               && (ended.Count > MaxKept || keptBytes > KeptBytesLimit || clock.GetElapsedTime(oldest.EndedAt, now) > Keep))
        {
            ended.Dequeue();
            entries.Remove(oldest.Key);
            keptBytes -= oldest.Bytes;
        }
    }
}
