using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Dapr;

/// <summary>
/// Dapr's app API token (https://docs.dapr.io/operations/security/app-api-token/): when daprd has APP_API_TOKEN
/// (self-hosted: its environment; Kubernetes: the secret named by <c>dapr.io/app-token-secret</c>), it sends that
/// value as the header <c>dapr-api-token</c> on every call to its app. An app that only its sidecar should call
/// is given the same value and refuses calls without it, so reaching the app's port is not enough to use it.
/// </summary>
public static class DaprAppToken
{
    public const string ConfigurationKey = "APP_API_TOKEN";
    public const string Header = "dapr-api-token";

    // Kubernetes probes the app directly, without the token.
    private static readonly PathString[] ProbePaths = ["/healthz", "/readyz"];

    /// <summary>
    /// With APP_API_TOKEN configured, answers 401 (the contract's error envelope) to every request whose
    /// <c>dapr-api-token</c> header is not that token, except GET/HEAD of /healthz and /readyz and the endpoints named
    /// in <paramref name="openEndpoints"/>: routes called by something other than the sidecar that authenticate
    /// their callers themselves. Those are recognised by the endpoint routing chose, never by path, so the middleware
    /// must run after routing to open them (before it, they are refused like any other). Without APP_API_TOKEN it does nothing.
    /// </summary>
    public static IApplicationBuilder UseDaprAppToken(this IApplicationBuilder app, string appId, params IReadOnlyCollection<string> openEndpoints)
    {
        var token = app.ApplicationServices.GetRequiredService<IConfiguration>()[ConfigurationKey];
        if (string.IsNullOrEmpty(token)) return app;
        var expected = SHA256.HashData(Encoding.UTF8.GetBytes(token));
        return app.Use((context, next) =>
        {
            if (IsProbe(context.Request) || IsOpen(context, openEndpoints)) return next(context);
            var presented = context.Request.Headers[Header].ToString();
            // Hashes of equal length, compared in constant time: the answer's timing says nothing about how much matched.
            if (presented.Length > 0 && CryptographicOperations.FixedTimeEquals(expected, SHA256.HashData(Encoding.UTF8.GetBytes(presented))))
                return next(context);
            return RefuseAsync(context, presented.Length == 0
                ? $"{appId} only takes calls from its Dapr sidecar: the {Header} header is missing (daprd sends it when it is given the app API token, {ConfigurationKey})"
                : $"{appId} only takes calls from its Dapr sidecar: the {Header} header is wrong (it is not the app API token, {ConfigurationKey})");
        });
    }

    /// <summary>
    /// The endpoint filter of the routes only this app's sidecar calls (<c>/dapr/subscribe</c>, pub/sub deliveries): with
    /// APP_API_TOKEN, <see cref="UseDaprAppToken"/> has already checked the sidecar's header; without it, the call must
    /// come over loopback, as a sidecar's does (same pod, or same host when self-hosted). A test server has no remote
    /// address and counts as local.
    /// </summary>
    public static Func<EndpointFilterInvocationContext, EndpointFilterDelegate, ValueTask<object?>> SidecarOnly(IServiceProvider services)
    {
        var appToken = !string.IsNullOrEmpty(services.GetRequiredService<IConfiguration>()[ConfigurationKey]);
        return (context, next) =>
        {
            var http = context.HttpContext;
            var remote = http.Connection.RemoteIpAddress;
            if (appToken || remote is null || System.Net.IPAddress.IsLoopback(remote))
                return next(context);
            throw Problems.Forbidden($"{http.Request.Path} is for this app's Dapr sidecar, which calls it over loopback; {remote} is not " +
                $"(give the app and its sidecar an app API token, {ConfigurationKey}, to take its calls from elsewhere)");
        };
    }

    private static bool IsProbe(HttpRequest request) =>
        (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method)) && ProbePaths.Contains(request.Path);

    private static bool IsOpen(HttpContext context, IReadOnlyCollection<string> openEndpoints) =>
        openEndpoints.Count > 0
        && context.GetEndpoint()?.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName is { } name
        && openEndpoints.Contains(name);

    // Written here rather than thrown: the functions and graphs apps have no error-envelope middleware.
    private static Task RefuseAsync(HttpContext context, string message)
    {
        context.Response.StatusCode = StatusCodes.Status401Unauthorized;
        context.Response.ContentType = "application/json";
        var body = new JsonObject { ["success"] = false, ["message"] = message, ["code"] = ErrorCodes.Unauthorized };
        return context.Response.WriteAsync(body.ToJsonString(), context.RequestAborted);
    }
}
