namespace PolicyGrid.Core.Errors;

/// <summary>One invalid field, named by its path (e.g. <c>policy_parameters.local_allowlist[2]</c>).</summary>
public sealed record FieldError(string Path, string Message)
{
    public override string ToString() => $"{Path}: {Message}";
}

/// <summary>
/// The one exception type the domain throws. It carries the HTTP status and the contract's
/// <c>code</c> word so that every layer answers a caller's mistake the same way, and never as a 500.
/// </summary>
public class PolicyGridException : Exception
{
    public PolicyGridException(int status, string code, string message, IReadOnlyList<FieldError>? errors = null, Exception? inner = null)
        : base(message, inner)
    {
        Status = status;
        Code = code;
        Errors = errors ?? [];
    }

    public int Status { get; }
    public string Code { get; }
    public IReadOnlyList<FieldError> Errors { get; }

    /// <summary>Seconds a caller should wait before retrying (429 / 503), when known.</summary>
    public int? RetryAfterSeconds { get; init; }
}

/// <summary>Factories for every status/code pair of the contract's table.</summary>
public static class Problems
{
    public static PolicyGridException BadRequest(string message) => new(400, ErrorCodes.BadRequest, message);

    /// <summary>
    /// Field errors one answer lists; the rest are counted. A 1 MiB body of 130,000 mistyped list items was answered with
    /// 22 MB naming each one twice (message and <c>errors</c>); the first few say what is wrong as well as all of them.
    /// </summary>
    public const int MaxListedErrors = 50;

    public static PolicyGridException Validation(IReadOnlyList<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (errors.Count <= MaxListedErrors)
            return new(400, ErrorCodes.ValidationFailed, string.Join("; ", errors.Select(e => e.ToString())), errors);
        var listed = errors.Take(MaxListedErrors).ToArray();
        return new(400, ErrorCodes.ValidationFailed,
            $"{string.Join("; ", listed.Select(e => e.ToString()))}; and {errors.Count - MaxListedErrors} more errors not listed here", listed);
    }

    public static PolicyGridException Validation(string path, string message) => Validation([new FieldError(path, message)]);

    public static PolicyGridException Unauthorized(string message) => new(401, ErrorCodes.Unauthorized, message);
    public static PolicyGridException Forbidden(string message) => new(403, ErrorCodes.Forbidden, message);
    public static PolicyGridException NotFound(string message) => new(404, ErrorCodes.NotFound, message);

    /// <summary>
    /// The 404 for a policy URI the registry has no entry for, worded alike on every path that looks one up (GET/PUT/DELETE
    /// /policy, Type 2 calls and management, graph nodes, function deploys, job launches), so the SDKs and the CLI pass on
    /// one sentence: it was "policy 'x' does not exist", "no policy 'x' is registered" or "policy 'x' is not registered"
    /// depending on the path. <paramref name="hint"/>: what this path adds in parentheses (how to fix it).
    /// </summary>
    public static PolicyGridException UnknownPolicy(string uri, string? hint = null) =>
        NotFound(hint is null ? $"no policy '{uri}' is registered" : $"no policy '{uri}' is registered ({hint})");
    public static PolicyGridException Conflict(string message) => new(409, ErrorCodes.Conflict, message);
    public static PolicyGridException Retired(string message) => new(410, ErrorCodes.Retired, message);
    public static PolicyGridException TooLarge(string message) => new(413, ErrorCodes.TooLarge, message);
    public static PolicyGridException PolicyError(string message) => new(422, ErrorCodes.PolicyError, message);
    public static PolicyGridException PolicyCrashed(string message) => new(422, ErrorCodes.PolicyCrashed, message);
    public static PolicyGridException PolicyMemoryLimit(string message) => new(422, ErrorCodes.PolicyMemoryLimit, message);
    public static PolicyGridException Overloaded(string message, int retryAfterSeconds) =>
        new(429, ErrorCodes.Overloaded, message) { RetryAfterSeconds = retryAfterSeconds };
    public static PolicyGridException BackendError(string message, Exception? inner = null) => new(502, ErrorCodes.BackendError, message, null, inner);
    public static PolicyGridException BackendUnavailable(string message, Exception? inner = null) => new(503, ErrorCodes.BackendUnavailable, message, null, inner);
    public static PolicyGridException PolicyTimeout(string message) => new(504, ErrorCodes.PolicyTimeout, message);

    /// <summary>
    /// How a PolicyGrid server's 404 for a path it has no route for begins ("no such route: POST /x"), as opposed to its 404
    /// for a document that does not exist: a server calling another (an executor node) tells the two apart by it.
    /// </summary>
    public const string NoSuchRoute = "no such route: ";
}

public static class ErrorCodes
{
    public const string BadRequest = "bad_request";
    public const string ValidationFailed = "validation_failed";
    public const string Unauthorized = "unauthorized";
    public const string Forbidden = "forbidden";
    public const string NotFound = "not_found";
    public const string Conflict = "conflict";
    public const string Retired = "retired";
    public const string TooLarge = "too_large";
    public const string PolicyError = "policy_error";
    public const string PolicyCrashed = "policy_crashed";
    public const string PolicyMemoryLimit = "policy_memory_limit";
    public const string Overloaded = "overloaded";
    public const string BackendError = "backend_error";
    public const string BackendUnavailable = "backend_unavailable";
    public const string PolicyTimeout = "policy_timeout";
}
