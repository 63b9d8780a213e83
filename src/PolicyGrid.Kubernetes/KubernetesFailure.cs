using System.Net;
using k8s.Autorest;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Kubernetes;

/// <summary>Turns Kubernetes client failures into the contract's errors (502 when the API server refused, 503 when it could not be reached).</summary>
internal static class KubernetesFailure
{
    public static bool IsNotFound(Exception e) => e is HttpOperationException { Response.StatusCode: HttpStatusCode.NotFound };

    public static bool IsConflict(Exception e) => e is HttpOperationException { Response.StatusCode: HttpStatusCode.Conflict };

    /// <summary>True for failures worth retrying: the server could not be reached or answered 5xx/429.</summary>
    public static bool IsTransient(Exception e) =>
        e is HttpRequestException or TaskCanceledException { InnerException: TimeoutException }
        || e is HttpOperationException { Response.StatusCode: var s } && ((int)s >= 500 || s == HttpStatusCode.TooManyRequests);

    public static PolicyGridException Describe(Exception e, string action) => e switch
    {
        HttpOperationException h => Problems.BackendError(
            $"the Kubernetes API answered {(int)h.Response.StatusCode} to {action}{Reason(h)}"),
        HttpRequestException => Problems.BackendUnavailable($"cannot reach the cluster's Kubernetes API server to {action}"),
        _ => Problems.BackendError($"the Kubernetes client failed to {action}: {e.GetType().Name}"),
    };

    // The API server's Status message says what was wrong (forbidden verb, missing namespace); it holds no credentials.
    private static string Reason(HttpOperationException h)
    {
        var content = h.Response.Content;
        if (string.IsNullOrWhiteSpace(content)) return "";
        try
        {
            var message = System.Text.Json.Nodes.JsonNode.Parse(content)?["message"]?.GetValue<string>();
            return string.IsNullOrEmpty(message) ? "" : $": {message}";
        }
        catch (System.Text.Json.JsonException)
        {
            return "";
        }
    }
}
