using System.Text.Json.Nodes;

namespace PolicyGrid.Sdk.Client;

/// <summary>
/// A failure in the contract's terms: HTTP status, the machine <c>code</c> word and a message for a
/// person. Thrown for the server's failure envelope and, with the same codes, for failures a local
/// evaluator finds itself (a held policy that was retired answers 410 <c>retired</c>).
/// </summary>
public class PolicyGridApiException : Exception
{
    public PolicyGridApiException(int status, string code, string message, JsonArray? errors = null, Exception? inner = null)
        : base($"{status} {code}: {message}", inner)
    {
        Status = status;
        Code = code;
        Reason = message;
        Errors = errors ?? [];
    }

    public int Status { get; }
    public string Code { get; }

    /// <summary>The server's <c>message</c>, without the status and code prefix of <see cref="Exception.Message"/>.</summary>
    public string Reason { get; }

    /// <summary>One entry per invalid field, when the server listed them.</summary>
    public JsonArray Errors { get; }

    /// <summary>Seconds to wait before retrying, from <c>Retry-After</c> (429 / 503).</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <summary>
    /// What an SDK caller does about it, when the client knows (a 401: how to give this client a token; a refused
    /// connection: where the server is set). Part of <see cref="Exception.Message"/>, not of <see cref="Reason"/>, which
    /// stays the server's words (the CLI prints those with its own hint, naming its own options).
    /// </summary>
    public string? Hint { get; init; }

    public override string Message => Hint is null ? base.Message : $"{base.Message} ({Hint})";
}

/// <summary>The server could not be reached (refused, timed out, name not resolved): calls fail closed.</summary>
public sealed class PolicyGridUnreachableException(Uri server, string reason, Exception? inner = null)
    : PolicyGridApiException(503, "backend_unavailable", $"cannot reach PolicyGrid at {server}: {reason}", null, inner)
{
    public Uri Server { get; } = server;
}
