using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Transports;

/// <summary>
/// An executor node's own 503 backend_unavailable envelope (its store or bundle source down, its policy workers not
/// starting, ...), passed on as a 503 naming the node with its message and <c>Retry-After</c>. The node answered, so it
/// is up: unlike a node that cannot be reached, this does not mark the executor unhealthy (the unavailability may be one
/// policy's, such as its bundle URL), and an unhealthy executor that answers so is up again.
/// </summary>
public sealed class NodeUnavailable : PolicyGridException
{
    private NodeUnavailable(string message) : base(503, ErrorCodes.BackendUnavailable, message) { }

    /// <summary>
    /// A node's own 503 whose <paramref name="message"/> already names what is unavailable (a function actor's answer), passed
    /// on as it is, with the node's <c>Retry-After</c> when it gave one.
    /// </summary>
    public static NodeUnavailable Answered(string message, int? retryAfterSeconds) => new(message) { RetryAfterSeconds = retryAfterSeconds };

    /// <summary>The caller-facing failure for a node's 503 envelope carrying <paramref name="said"/>.</summary>
    public static NodeUnavailable From(string nodeName, string said, int? retryAfterSeconds) =>
        new($"{nodeName} is unavailable{(said.Length > 0 ? ": " + said : "")}") { RetryAfterSeconds = retryAfterSeconds };
}
