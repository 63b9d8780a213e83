using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// The limits on a request's head (<see cref="ApiLimits.MaxRequestTargetBytes"/>, <see cref="ApiLimits.MaxRequestHeadersBytes"/>,
/// <see cref="ApiLimits.MaxRequestHeaderCount"/>), answered 414 / 431 in the envelope naming the limit and its setting.
/// Kestrel enforces limits of its own before any middleware runs, and answers them with an empty body; so Kestrel's
/// are raised to <see cref="KestrelHeadroom"/> times ours (<see cref="KestrelRequestHeadLimits"/>) and ours is the
/// one a caller meets. Past Kestrel's, Kestrel still answers, bodiless (docs/api.md says which requests those are).
/// </summary>
public sealed class RequestHeadLimitsMiddleware(RequestDelegate next, IOptions<ApiLimits> options)
{
    /// <summary>How far above the API's limits Kestrel's own are set.</summary>
    public const int KestrelHeadroom = 4;

    // Each header line also carries ": " and CRLF, which Kestrel counts too.
    private const int LineOverhead = 4;

    public Task InvokeAsync(HttpContext context)
    {
        var limits = options.Value;
        var target = Target(context);
        if (target.Length > limits.MaxRequestTargetBytes)
            return Refuse(context, StatusCodes.Status414UriTooLong,
                $"the request target (path and query string) is {target.Length} bytes, over the limit of {limits.MaxRequestTargetBytes} bytes " +
                $"({ApiLimits.Setting(nameof(ApiLimits.MaxRequestTargetBytes))}); a query's filter belongs in the body of POST .../query");

        long total = 0;
        var count = 0;
        (string Name, long Bytes) largest = ("", 0);
        foreach (var (name, values) in context.Request.Headers)
            foreach (var value in values)
            {
                long bytes = name.Length + (value?.Length ?? 0) + LineOverhead;
                total += bytes;
                count++;
                if (bytes > largest.Bytes) largest = (name, bytes);
            }
        if (count > limits.MaxRequestHeaderCount)
            return Refuse(context, StatusCodes.Status431RequestHeaderFieldsTooLarge,
                $"the request has {count} header lines, over the limit of {limits.MaxRequestHeaderCount} ({ApiLimits.Setting(nameof(ApiLimits.MaxRequestHeaderCount))})");
        if (total > limits.MaxRequestHeadersBytes)
            return Refuse(context, StatusCodes.Status431RequestHeaderFieldsTooLarge,
                $"the request headers are {total} bytes, over the limit of {limits.MaxRequestHeadersBytes} bytes " +
                $"({ApiLimits.Setting(nameof(ApiLimits.MaxRequestHeadersBytes))}); the largest is '{largest.Name}' ({largest.Bytes} bytes)");
        return next(context);
    }

    /// <summary>The target as the client sent it; a server that keeps no raw target (the test server) rebuilds it.</summary>
    private static string Target(HttpContext context)
    {
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (!string.IsNullOrEmpty(raw)) return raw;
        var request = context.Request;
        return request.PathBase.ToUriComponent() + request.Path.ToUriComponent() + request.QueryString.ToUriComponent();
    }

    private static Task Refuse(HttpContext context, int status, string message)
    {
        // The client may still be sending a body it was not asked for; do not keep the connection for it.
        context.Response.Headers.Connection = "close";
        return Failure.Of(status, ErrorCodes.TooLarge, message).ExecuteAsync(context);
    }
}

/// <summary>
/// Kestrel's own request-head limits, set <see cref="RequestHeadLimitsMiddleware.KestrelHeadroom"/> times above the
/// API's so that the API's limit, answered in the envelope, is the one a caller meets.
/// </summary>
public sealed class KestrelRequestHeadLimits(IOptions<ApiLimits> options) : IConfigureOptions<KestrelServerOptions>
{
    public void Configure(KestrelServerOptions kestrel)
    {
        var api = options.Value;
        var limits = kestrel.Limits;
        limits.MaxRequestLineSize = Raised(limits.MaxRequestLineSize, api.MaxRequestTargetBytes);
        limits.MaxRequestHeadersTotalSize = Raised(limits.MaxRequestHeadersTotalSize, api.MaxRequestHeadersBytes);
        limits.MaxRequestHeaderCount = Raised(limits.MaxRequestHeaderCount, api.MaxRequestHeaderCount);
    }

    // Never lowered (below Kestrel's default, or an operator's own Kestrel:Limits setting), never past what an int holds.
    private static int Raised(int current, int apiLimit) =>
        (int)Math.Clamp((long)apiLimit * RequestHeadLimitsMiddleware.KestrelHeadroom, current, int.MaxValue);
}
