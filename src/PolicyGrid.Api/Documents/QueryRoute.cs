using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Documents;

/// <summary>
/// <c>{area}/query</c> is POST only. Without a route of its own for the other methods, routing hands
/// <c>GET /policy/query</c> to <c>GET /policy/{uri}</c>, which answers 404 "no policy 'query'"; this answers 405 with
/// <c>Allow: POST</c> and says how to query instead.
/// </summary>
public static class QueryRoute
{
    private static readonly string[] OtherMethods =
        [HttpMethods.Get, HttpMethods.Head, HttpMethods.Put, HttpMethods.Delete, HttpMethods.Patch, HttpMethods.Options, HttpMethods.Trace];

    /// <param name="read">How one document of the area is read, e.g. <c>GET /policy/{uri}</c>.</param>
    public static IEndpointRouteBuilder MapQueryIsPostOnly(this IEndpointRouteBuilder group, string read)
    {
        group.MapMethods("/query", OtherMethods, (HttpContext http) =>
            {
                http.Response.Headers.Allow = HttpMethods.Post;
                var path = http.Request.Path;
                var method = HeadAsGetMiddleware.SentMethod(http);
                return Failure.Of(StatusCodes.Status405MethodNotAllowed, ErrorCodes.BadRequest,
                    $"{method} is not allowed on {path}; allowed: POST. A query is POST {path} with a filter as the JSON body " +
                    $"({{}} matches everything); one document is read with {read}");
            })
            .ExcludeFromDescription();
        return group;
    }
}
