using Dapr;
using Grpc.Core;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Dapr;

/// <summary>
/// Turns what the Dapr SDK throws into the contract's 502/503: a sidecar (or the store behind it)
/// that cannot be reached is <c>backend_unavailable</c> and worth retrying; anything else it
/// reports is <c>backend_error</c>. The message names the component so an operator knows where to look.
/// </summary>
public static class SidecarFailures
{
    public static PolicyGridException Translate(Exception e, string what)
    {
        if (e is PolicyGridException p) return p;
        var rpc = Find<RpcException>(e);
        var detail = rpc?.Status.Detail is { Length: > 0 } d ? d : e.Message;
        if (IsUnavailable(e))
            return Problems.BackendUnavailable($"{what} is unavailable through the Dapr sidecar: {detail}", e);
        return Problems.BackendError($"{what} failed in the Dapr sidecar: {detail}", e);
    }

    public static bool IsUnavailable(Exception e) =>
        Find<RpcException>(e)?.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded
        || Find<HttpRequestException>(e) is not null
        || Find<System.Net.Sockets.SocketException>(e) is not null;

    /// <summary>True for the errors a SDK call raises, as opposed to our own bugs.</summary>
    public static bool IsSidecarFailure(Exception e) => e is DaprException or RpcException or HttpRequestException;

    public static T? Find<T>(Exception? e) where T : Exception
    {
        for (; e is not null; e = e.InnerException)
            if (e is T t) return t;
        return null;
    }
}
