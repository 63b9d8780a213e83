using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Polly.CircuitBreaker;
using Polly.Timeout;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Runtime.Transports;

/// <summary>
/// Talks to one executor node: <c>POST {host}/execute_policy</c> and <c>POST {host}/management</c>
/// with the contract's bodies. A node that cannot be reached answers 503 backend_unavailable (fast,
/// once its circuit is open); a node failing with a 5xx answers 502 backend_error; the node's own
/// 4xx answers (and its 504 policy_timeout) pass through with its code and message.
/// </summary>
public sealed class RemoteExecutorClient(HttpClient http, Uri node, RemoteExecutorOptions remote, ExecutionOptions execution) : IPolicyExecutor
{
    public Task<PolicyResult> ExecuteAsync(ExecutionRequest request, CallerIdentity caller, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return PostAsync("execute_policy", request.ToNodeBody(), request.TimeoutSeconds, ct);
    }

    public Task<PolicyResult> ManageAsync(ManagementRequest request, CallerIdentity caller, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return PostAsync("management", request.ToNodeBody(), request.TimeoutSeconds, ct);
    }

    private async Task<PolicyResult> PostAsync(string path, JsonObject body, double? timeoutSeconds, CancellationToken ct)
    {
        var target = new Uri(node.AbsoluteUri.TrimEnd('/') + "/" + path);
        using var message = new HttpRequestMessage(HttpMethod.Post, target) { Content = JsonContent.Create(body) };
        if (!string.IsNullOrEmpty(remote.Token)) message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", remote.Token);
        // The node enforces the policy's deadline; we only wait that long plus the network's share.
        var policyDeadline = timeoutSeconds is > 0 ? TimeSpan.FromSeconds(timeoutSeconds.Value) : execution.MaxTimeout;
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(policyDeadline + remote.Overhead);
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(message, HttpCompletionOption.ResponseContentRead, wait.Token);
        }
        catch (BrokenCircuitException e)
        {
            throw Problems.BackendUnavailable($"executor node {node} is not answering (failing fast until it recovers)", e);
        }
        catch (Exception e) when (e is HttpRequestException or TimeoutRejectedException || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            throw Problems.BackendUnavailable($"executor node {node} could not be reached: {e.Message}", e);
        }
        using (response)
        {
            var envelope = await ReadEnvelopeAsync(response, ct);
            if (response.IsSuccessStatusCode)
            {
                if (envelope?["success"]?.GetValueKind() == JsonValueKind.True && envelope["data"] is JsonObject data)
                    return new PolicyResult((JsonObject)data.DeepClone(), response.Headers.Contains("Deprecation"));
                throw Problems.BackendError($"executor node {node} answered {(int)response.StatusCode} without a result envelope");
            }
            var status = (int)response.StatusCode;
            var code = envelope?["code"]?.GetValueKind() == JsonValueKind.String ? envelope["code"]!.GetValue<string>() : "";
            var text = envelope?["message"]?.GetValueKind() == JsonValueKind.String ? envelope["message"]!.GetValue<string>() : response.ReasonPhrase ?? "";
            if (status < 500 || (status == 504 && code == ErrorCodes.PolicyTimeout))
            {
                // The node's own verdict on the caller's request (or the policy's deadline): pass it on as is.
                throw new PolicyGridException(status, code.Length > 0 ? code : CodeFor(response.StatusCode), text)
                {
                    RetryAfterSeconds = response.Headers.RetryAfter?.Delta is { } delta ? (int)Math.Ceiling(delta.TotalSeconds) : null,
                };
            }
            throw Problems.BackendError($"executor node {node} failed with {status}{(code.Length > 0 ? " " + code : "")}: {text}");
        }
    }

    private static async Task<JsonObject?> ReadEnvelopeAsync(HttpResponseMessage response, CancellationToken ct)
    {
        try
        {
            return JsonNode.Parse(await response.Content.ReadAsStringAsync(ct)) as JsonObject;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string CodeFor(HttpStatusCode status) => status switch
    {
        HttpStatusCode.Unauthorized => ErrorCodes.Unauthorized,
        HttpStatusCode.Forbidden => ErrorCodes.Forbidden,
        HttpStatusCode.NotFound => ErrorCodes.NotFound,
        HttpStatusCode.Conflict => ErrorCodes.Conflict,
        HttpStatusCode.Gone => ErrorCodes.Retired,
        HttpStatusCode.RequestEntityTooLarge => ErrorCodes.TooLarge,
        HttpStatusCode.TooManyRequests => ErrorCodes.Overloaded,
        _ => ErrorCodes.BadRequest,
    };
}
