using System.Globalization;

namespace PolicyGrid.Runtime.Transports;

/// <summary>Headers a caller of an executor node's API (<c>/execute_policy</c>, <c>/management</c>, <c>/call_function/{name}</c>, ...) may send.</summary>
public static class NodeHeaders
{
    /// <summary>
    /// Names one logical call; every retry of it repeats the id, so the node runs it at most once (its NodeCallLedger
    /// answers a repeated id with the first run's answer).
    /// </summary>
    public const string CallId = "X-PolicyGrid-Call-Id";

    /// <summary>
    /// How long, in whole milliseconds from when the node receives the request, the caller will wait for the answer.
    /// Relative, because the two machines' clocks differ. A call still waiting for its turn when it has run out is not
    /// started: the node answers 504 and the call has no effect.
    /// </summary>
    public const string TimeoutMs = "X-PolicyGrid-Timeout-Ms";

    /// <summary>The longest budget a node takes (30 days, as a graph's deadline); more is a 400 naming the header.</summary>
    public const long MaxTimeoutMs = 30L * 24 * 3600 * 1000;

    /// <summary>A fresh call id.</summary>
    public static string NewCallId() => Guid.NewGuid().ToString("N");

    /// <summary>Names a call to a node: its id (the same on every resend) and, when given, how long its caller still waits.</summary>
    public static void Name(HttpRequestMessage request, string callId, TimeSpan? wait)
    {
        request.Headers.TryAddWithoutValidation(CallId, callId);
        if (wait is { } left) request.Headers.TryAddWithoutValidation(TimeoutMs, Milliseconds(left));
    }

    /// <summary>What a call's caller hears when every delivery of it was lost after it went out (<paramref name="when"/>: "before answering", ...).</summary>
    public static string LostEveryTime(Uri node, string when, string detail) =>
        $"executor node {node} dropped the call {when} ({detail}), also when it was sent again with the same {CallId}; it may have run there, at most once";

    /// <summary>A wait as the header's value: whole milliseconds, at least 1.</summary>
    public static string Milliseconds(TimeSpan wait) =>
        Math.Clamp((long)Math.Ceiling(wait.TotalMilliseconds), 1, MaxTimeoutMs).ToString(CultureInfo.InvariantCulture);
}
