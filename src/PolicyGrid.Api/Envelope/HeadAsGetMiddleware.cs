using Microsoft.AspNetCore.Http;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// HEAD is answered wherever GET is (RFC 9110 requires it of a general-purpose server; load balancers probe with it):
/// routing sees a HEAD as the GET it stands for, so it reaches the same endpoint, token check and status. The server
/// still knows the request was a HEAD and sends the headers without the body (Kestrel decides that from the method it
/// parsed, not from <see cref="HttpRequest.Method"/>). The method is HEAD again once the endpoint has answered, so a
/// 405 for a route without GET names HEAD.
/// </summary>
public sealed class HeadAsGetMiddleware(RequestDelegate next)
{
    private static readonly object HeadKey = new();

    public async Task InvokeAsync(HttpContext context)
    {
        if (!HttpMethods.IsHead(context.Request.Method))
        {
            await next(context);
            return;
        }
        context.Items[HeadKey] = true;
        context.Request.Method = HttpMethods.Get;
        try
        {
            await next(context);
        }
        finally
        {
            context.Request.Method = HttpMethods.Head;
        }
    }

    /// <summary>The method the client sent: HEAD while routing and the endpoint see GET for it.</summary>
    public static string SentMethod(HttpContext context) =>
        context.Items.ContainsKey(HeadKey) ? HttpMethods.Head : context.Request.Method;
}
