using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using Microsoft.AspNetCore.Routing;
using PolicyGrid.Api.Bundles;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Auth;

/// <summary>Marks an endpoint with the scope it needs when the default rule (GET and /query read, the rest write) is wrong for it.</summary>
public sealed record RequiredScope(string Scope);

/// <summary>
/// Bearer-token check. Runs after routing so it knows the endpoint: health probes and the API
/// reference are open, and bundle downloads by hash when <see cref="ApiAuthOptions.AnonymousBundleDownloads"/> says so; GET and query routes need <c>read</c>, everything else <c>write</c>
/// (<c>write</c> includes <c>read</c>). The token's name becomes the caller for the decision log.
/// </summary>
public sealed class ApiTokenMiddleware(RequestDelegate next, IOptionsMonitor<ApiAuthOptions> options)
{
    public const string ScopeClaim = "scope";

    public Task InvokeAsync(HttpContext context)
    {
        var auth = options.CurrentValue;
        var endpoint = context.GetEndpoint();
        if (!auth.Enabled || endpoint is null || endpoint.Metadata.GetMetadata<IAllowAnonymous>() is not null
            || (auth.AnonymousBundleDownloads && IsBundleDownload(endpoint)))
            return next(context);

        var header = context.Request.Headers.Authorization.ToString();
        if (string.IsNullOrEmpty(header))
            return Challenge(context, "this server requires an API token: send 'Authorization: Bearer <token>'", invalidToken: false);
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            return Challenge(context, "the Authorization header must be 'Bearer <token>'", invalidToken: false);
        var presented = header["Bearer ".Length..].Trim();
        var token = Find(auth, presented);
        if (token is null) return Challenge(context, "the API token is not valid", invalidToken: true);

        var needed = endpoint.Metadata.GetMetadata<RequiredScope>()?.Scope ?? DefaultScope(context.Request);
        var granted = token.Scopes.Contains(needed) || token.Scopes.Contains(ApiScopes.Write);
        if (!granted)
            throw Problems.Forbidden($"token '{token.Name}' has scope {string.Join(", ", token.Scopes.Distinct(StringComparer.Ordinal))}; {context.Request.Method} {context.Request.Path} needs '{needed}'");

        context.User = new ClaimsPrincipal(new ClaimsIdentity(
            [new Claim(ClaimTypes.Name, token.Name), .. token.Scopes.Distinct(StringComparer.Ordinal).Select(s => new Claim(ScopeClaim, s))], "Bearer"));
        return next(context);
    }

    /// <summary>
    /// A 401 with the challenge RFC 9110 requires of one (<c>WWW-Authenticate: Bearer</c>); when a bearer token was sent
    /// and is not one of ours, RFC 6750's <c>error="invalid_token"</c> tells a client that retrying it will not help.
    /// </summary>
    private static Task Challenge(HttpContext context, string message, bool invalidToken)
    {
        context.Response.Headers.WWWAuthenticate = invalidToken ? "Bearer error=\"invalid_token\"" : "Bearer";
        return Failure.From(Problems.Unauthorized(message)).ExecuteAsync(context);
    }

    // By the endpoint routing chose, not by path: only the download route is opened, whatever a path looks like.
    // HEAD reaches it as a GET (HeadAsGetMiddleware runs before routing).
    private static bool IsBundleDownload(Endpoint endpoint) =>
        endpoint.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName == BundlesApi.DownloadEndpoint;

    public static string DefaultScope(HttpRequest request) =>
        HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) ||
        (request.Path.Value ?? "").TrimEnd('/').EndsWith("/query", StringComparison.Ordinal)
            ? ApiScopes.Read
            : ApiScopes.Write;

    // Compares hashes in constant time so response timing does not reveal how much of a token matched.
    private static ApiToken? Find(ApiAuthOptions auth, string presented)
    {
        var presentedHash = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
        ApiToken? match = null;
        foreach (var t in auth.Tokens)
            if (CryptographicOperations.FixedTimeEquals(presentedHash, SHA256.HashData(Encoding.UTF8.GetBytes(t.Token))))
                match = t;
        return match;
    }
}

public static class CallerIdentityExtensions
{
    /// <summary>The token name of the caller, or "anonymous" on an open server.</summary>
    public static CallerIdentity Caller(this HttpContext context) =>
        context.User.Identity is { IsAuthenticated: true, Name: { Length: > 0 } name } ? new CallerIdentity(name) : CallerIdentity.Anonymous;
}
