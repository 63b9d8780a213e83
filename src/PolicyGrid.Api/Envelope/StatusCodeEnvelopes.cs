using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// Bodiless error statuses produced by the framework (no route, wrong method) answered in the
/// envelope too, so clients that parse every error body never meet an empty one.
/// </summary>
public static class StatusCodeEnvelopes
{
    public static Task WriteAsync(StatusCodeContext context)
    {
        var http = context.HttpContext;
        var request = http.Request;
        var status = http.Response.StatusCode;
        var failure = status switch
        {
            404 => Failure.Of(404, ErrorCodes.NotFound, $"no such route: {request.Method} {request.Path}"),
            405 => Failure.Of(405, ErrorCodes.BadRequest, $"{request.Method} is not allowed on {request.Path}{Allowed(http)}"),
            413 => Failure.Of(413, ErrorCodes.TooLarge, "request body is larger than the server's limit"),
            415 => Failure.Of(400, ErrorCodes.BadRequest, $"Content-Type '{request.ContentType}' is not supported here"),
            401 => Failure.Of(401, ErrorCodes.Unauthorized, "an API token is required"),
            403 => Failure.Of(403, ErrorCodes.Forbidden, "the API token does not allow this"),
            _ => Failure.Of(status, status >= 500 ? "internal_error" : ErrorCodes.BadRequest, $"request failed with status {status}"),
        };
        return failure.ExecuteAsync(http);
    }

    private static string Allowed(HttpContext http)
    {
        var allow = WithHead(http.Response.Headers.Allow.ToString());
        if (allow.Length > 0) http.Response.Headers.Allow = allow;
        return allow.Length > 0 ? $"; allowed: {allow}" : "";
    }

    // Routing lists the methods of the endpoints it found; HEAD is answered wherever GET is (HeadAsGetMiddleware),
    // so where GET is allowed, HEAD is too, and Allow says so (RFC 9110: Allow lists every method the resource takes).
    private static string WithHead(string allow)
    {
        var methods = allow.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (!methods.Contains(HttpMethods.Get, StringComparer.OrdinalIgnoreCase) || methods.Contains(HttpMethods.Head, StringComparer.OrdinalIgnoreCase))
            return allow;
        return string.Join(", ", methods.Append(HttpMethods.Head).Order(StringComparer.Ordinal));
    }
}
