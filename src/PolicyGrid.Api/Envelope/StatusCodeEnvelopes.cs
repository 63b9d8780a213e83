using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.DependencyInjection;
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
        if (status is 404 or 405 && MissingSegment(http) is { } missing)
            return Failure.Of(400, ErrorCodes.BadRequest, missing).ExecuteAsync(http);
        var failure = status switch
        {
            404 => Failure.Of(404, ErrorCodes.NotFound, $"{Problems.NoSuchRoute}{request.Method} {request.Path}"),
            405 => Failure.Of(405, ErrorCodes.BadRequest, $"{request.Method} is not allowed on {request.Path}{Allowed(http)}"),
            413 => Failure.Of(413, ErrorCodes.TooLarge, "request body is larger than the server's limit"),
            // The usual cause is `curl -d` without `-H 'Content-Type: application/json'` (curl then says it is a form): say the fix.
            415 => Failure.Of(400, ErrorCodes.BadRequest, $"Content-Type '{request.ContentType}' is not supported here; {JsonBody.SendAsJson}"),
            401 => Failure.Of(401, ErrorCodes.Unauthorized, "an API token is required"),
            403 => Failure.Of(403, ErrorCodes.Forbidden, "the API token does not allow this"),
            _ => Failure.Of(status, status >= 500 ? "internal_error" : ErrorCodes.BadRequest, $"request failed with status {status}"),
        };
        return failure.ExecuteAsync(http);
    }

    /// <summary>
    /// The route a path with an empty segment was meant for, named with the segment left out. Routing ignores a trailing
    /// slash, so <c>POST /function/call_function/</c> (no name) finds only <c>GET /function/{functionId}</c> and would
    /// answer 405 "allowed: GET"; <c>GET /jobs/</c> would be "no such route". Both are a missing id, said as such.
    /// </summary>
    private static string? MissingSegment(HttpContext http)
    {
        var request = http.Request;
        var path = request.Path.Value ?? "";
        if (!path.EndsWith('/') && !path.Contains("//", StringComparison.Ordinal)) return null;
        var segments = path.Split('/')[1..];
        var method = HttpMethods.IsHead(request.Method) ? HttpMethods.Get : request.Method;
        var sources = http.RequestServices.GetService<EndpointDataSource>();
        if (sources is null) return null;
        foreach (var endpoint in sources.Endpoints.OfType<RouteEndpoint>())
        {
            if (endpoint.Metadata.GetMetadata<HttpMethodMetadata>() is not { } methods
                || !methods.HttpMethods.Contains(method, StringComparer.OrdinalIgnoreCase)) continue;
            var pattern = endpoint.RoutePattern;
            if (pattern.PathSegments.Count != segments.Length) continue;
            var missing = new List<string>();
            var matches = true;
            for (var i = 0; i < segments.Length && matches; i++)
            {
                var parts = pattern.PathSegments[i].Parts;
                if (parts is [RoutePatternParameterPart parameter])
                {
                    if (segments[i].Length == 0) missing.Add(ContractName(parameter.Name));
                }
                else
                {
                    matches = parts is [RoutePatternLiteralPart literal] && literal.Content.Equals(segments[i], StringComparison.OrdinalIgnoreCase);
                }
            }
            if (!matches || missing.Count == 0) continue;
            return $"{request.Method} {path} is missing {string.Join(" and ", missing.Select(m => "{" + m + "}"))} (an empty path segment): " +
                $"the route is {request.Method} /{string.Join('/', pattern.PathSegments.Select(Text))}";
        }
        return null;
    }

    // Route parameters are C# names (functionId); the contract spells them as its fields are (function_id).
    private static string ContractName(string parameter) => System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(parameter);

    private static string Text(RoutePatternPathSegment segment) => string.Concat(segment.Parts.Select(part => part switch
    {
        RoutePatternLiteralPart literal => literal.Content,
        RoutePatternParameterPart parameter => "{" + ContractName(parameter.Name) + "}",
        RoutePatternSeparatorPart separator => separator.Content,
        _ => "",
    }));

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
