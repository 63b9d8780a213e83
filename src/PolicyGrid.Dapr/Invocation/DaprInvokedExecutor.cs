using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Transports;

namespace PolicyGrid.Dapr.Invocation;

/// <summary>
/// Runs a policy on another Dapr app through service invocation: POST to its methods
/// <c>execute_policy</c> / <c>management</c> (the executor node API), sent to the local sidecar's
/// <c>/v1.0/invoke/{app-id}/method/{method}</c> with a plain HttpClient, as the Dapr .NET SDK 1.18
/// recommends (its DaprClient.InvokeMethod* calls are obsolete). Outcomes map to the contract:
/// <list type="bullet">
/// <item>the sidecar cannot be reached, or it cannot reach the app (ERR_DIRECT_INVOKE) → 503 backend_unavailable;</item>
/// <item>the node answered 4xx, or 504 policy_timeout, with our envelope → that status and code, passed through
/// (they are about the call or the policy, not the transport);</item>
/// <item>the app answered 503 → 503 backend_unavailable naming the app, with its message and Retry-After;</item>
/// <item>any other 5xx or an unreadable answer → 502 backend_error naming the app.</item>
/// </list>
/// </summary>
public sealed class DaprInvokedExecutor(HttpClient sidecar, string appId, TimeSpan? callTimeout = null) : IPolicyExecutor
{
    /// <summary>How long a call waits for its answer before it is a 503 (the sidecar's HttpClient has no timeout of its own).</summary>
    public TimeSpan CallTimeout { get; } = callTimeout ?? TimeSpan.FromMinutes(5);

    /// <summary>Carries the caller's identity to the node for its decision log.</summary>
    public const string CallerHeader = "X-PolicyGrid-Caller";

    /// <summary>Names the call, so the node runs it once however often it is delivered (the node API's NodeCallLedger).</summary>
    public const string CallIdHeader = PolicyGrid.Runtime.Transports.NodeHeaders.CallId;

    public string AppId => appId;

    public Task<PolicyResult> ExecuteAsync(ExecutionRequest request, CallerIdentity caller, CancellationToken ct = default)
    {
        return InvokeAsync(DaprNames.Methods.ExecutePolicy, request.ToNodeBody(), caller, ct);
    }

    public Task<PolicyResult> ManageAsync(ManagementRequest request, CallerIdentity caller, CancellationToken ct = default)
    {
        return InvokeAsync(DaprNames.Methods.Management, request.ToNodeBody(), caller, ct);
    }

    private async Task<PolicyResult> InvokeAsync(string method, JsonObject body, CallerIdentity caller, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, InvokePath(appId, method));
        request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        request.Headers.TryAddWithoutValidation(CallerHeader, caller.Name);
        // daprd retries a call whose connection failed (resiliency: gRPC UNAVAILABLE), also one that had reached the
        // node; the node answers a repeated id with the first run's answer instead of running the policy again.
        // With how long this call is waited for: one queued on the node past it (behind a slow call on its context) is not
        // started there, since nobody would hear its answer (docs/runtime.md, X-PolicyGrid-Timeout-Ms).
        PolicyGrid.Runtime.Transports.NodeHeaders.Name(request, PolicyGrid.Runtime.Transports.NodeHeaders.NewCallId(), CallTimeout);
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
        bounded.CancelAfter(CallTimeout);
        HttpResponseMessage response;
        try
        {
            response = await sidecar.SendAsync(request, bounded.Token);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            if (e is OperationCanceledException or TimeoutException)
                throw Problems.BackendUnavailable($"Dapr app '{appId}' did not answer {method} in time", e);
            throw Problems.BackendUnavailable($"Dapr app '{appId}' is unreachable through the sidecar ({method}): {e.Message}", e);
        }
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(ct);
            var json = TryParse(text);
            var status = (int)response.StatusCode;
            if (response.StatusCode == HttpStatusCode.OK && json?["success"]?.GetValueKind() == JsonValueKind.True && json["data"] is JsonObject data)
                return new PolicyResult((JsonObject)data.DeepClone(), response.Headers.Contains("Deprecation")) { Warnings = NodeAnswers.Warnings(json) };
            if (json?["errorCode"] is JsonValue daprCode)
            {
                // An error of the sidecar itself (Dapr's {"errorCode", "message"}), not of the node.
                var code = daprCode.ToString();
                var message = json["message"]?.ToString() ?? text;
                if (code == "ERR_DIRECT_INVOKE" || status == 503)
                    throw Problems.BackendUnavailable($"Dapr app '{appId}' cannot be reached ({method}): {message}");
                throw Problems.BackendError($"the Dapr sidecar failed to invoke '{appId}' ({method}): {code} {message}");
            }
            if (json?["success"]?.GetValueKind() == JsonValueKind.False && json["code"] is JsonValue nodeCode
                && (status is >= 400 and < 500 || (status == 504 && nodeCode.ToString() == ErrorCodes.PolicyTimeout)))
            {
                throw new PolicyGridException(status, nodeCode.ToString(), json["message"]?.ToString() ?? $"executor '{appId}' answered {status}")
                {
                    RetryAfterSeconds = response.Headers.RetryAfter?.Delta is { } d ? (int)Math.Clamp(Math.Ceiling(d.TotalSeconds), 0, RemoteExecutorClient.MaxRetryAfterSeconds) : null,
                };
            }
            var retryAfter = response.Headers.RetryAfter?.Delta is { } delta
                ? (int)Math.Clamp(Math.Ceiling(delta.TotalSeconds), 0, RemoteExecutorClient.MaxRetryAfterSeconds) : (int?)null;
            if (status == 503 && json?["success"]?.GetValueKind() == JsonValueKind.False && json["code"] is JsonValue)
                // The app's own "not now" (its store or workers unavailable): it answered, so it is not down; its Retry-After goes on.
                throw NodeUnavailable.From($"Dapr app '{appId}' ({method})", Describe(json, text), retryAfter);
            if (status == 503)
                throw new PolicyGridException(503, ErrorCodes.BackendUnavailable, $"Dapr app '{appId}' is unavailable ({method}): {Describe(json, text)}")
                    { RetryAfterSeconds = retryAfter };
            throw Problems.BackendError($"Dapr app '{appId}' answered {status} to {method}: {Describe(json, text)}");
        }
    }

    /// <summary>The sidecar's service invocation path, relative to its HTTP endpoint.</summary>
    public static string InvokePath(string appId, string method) =>
        $"v1.0/invoke/{Uri.EscapeDataString(appId)}/method/{method}";

    private static string Describe(JsonObject? json, string text) =>
        json?["message"]?.ToString() ?? (text.Length > 300 ? text[..300] + "..." : text);

    private static JsonObject? TryParse(string text) => NodeAnswers.TryParse(Encoding.UTF8.GetBytes(text));
}
