using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Bundles;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Transports;

namespace PolicyGrid.Api.Functions;

/// <summary>
/// Functions on an <c>http(s)://</c> executor: the registry forwards to that node's deployment routes
/// (<c>POST /deployments</c>, <c>POST /call_function/{name}</c>, ...) and unwraps its envelope, keeping the node's
/// status and code, with the <c>PolicyGrid:Runtime:RemoteExecutors:Token</c> as bearer token when one is set. The
/// node runs the policy snapshot it is sent; a <c>bundle://</c> in its <c>code</c> is uploaded to the node
/// (<c>POST /bundles</c>, content-addressed, so idempotent) before the deployment, so the node can resolve it.
/// Without a bundle store (the graphs app, which only calls functions) it calls, manages and removes, but does not deploy.
/// </summary>
public sealed class RemoteFunctionHost(HttpClient http, Uri node, IBundleStore? bundles, string? token = null,
    TimeSpan? callTimeout = null, TimeSpan? deployTimeout = null) : IFunctionHost
{
    // RemoteExecutors:FunctionCallTimeout for calls, management and removal; FunctionDeployTimeout for a deployment (its
    // bundle and the node's load together). Without them, the client's own timeout bounds every request.
    private readonly TimeSpan callTimeout = callTimeout ?? http.Timeout;
    private readonly TimeSpan deployTimeout = deployTimeout ?? http.Timeout;

    public const string HttpClientName = "policygrid-remote-functions";

    public async Task DeployAsync(FunctionSpec spec, CancellationToken ct = default)
    {
        if (bundles is null)
            throw new InvalidOperationException($"this host of executor node {node} has no bundle store: it calls functions but cannot deploy them");
        var started = TimeProvider.System.GetTimestamp();
        await SendBundleAsync(bundles, spec.Policy["code"]?.GetValue<string>(), deployTimeout, ct);
        var document = new JsonObject
        {
            ["function_id"] = spec.Name,
            ["function_policy_rule_uri"] = spec.PolicyRuleUri,
            ["function_policy_data"] = spec.Policy.DeepClone(),
            ["replicas"] = spec.Scale.Replicas,
            ["autoscaling"] = new JsonObject
            {
                ["enabled"] = spec.Scale.Autoscale,
                ["min_replicas"] = spec.Scale.MinReplicas,
                ["max_replicas"] = spec.Scale.MaxReplicas,
            },
        };
        await SendAsync(HttpMethod.Post, "deployments", JsonContent.Create(document, options: Json.Options), ct,
            left: Left(deployTimeout, started), timeout: deployTimeout);
    }

    // What is left of a wait of `timeout` begun at `started` (null when unbounded); past it, no answer in time.
    private TimeSpan? Left(TimeSpan timeout, long started)
    {
        if (timeout == Timeout.InfiniteTimeSpan) return null;
        var left = timeout - TimeProvider.System.GetElapsedTime(started);
        return left > TimeSpan.Zero ? left : throw NoAnswerInTime(new TimeoutException(), timeout);
    }

    public async Task<JsonObject> CallAsync(string name, JsonNode? input, CancellationToken ct = default) =>
        await SendOnceAsync($"call_function/{Uri.EscapeDataString(name)}", input ?? new JsonObject(), ct) as JsonObject ?? [];

    public async Task<JsonObject> ManageAsync(string name, string action, JsonObject data, CancellationToken ct = default) =>
        await SendOnceAsync($"deployments/{Uri.EscapeDataString(name)}/management", new JsonObject { ["action"] = action, ["data"] = data.DeepClone() }, ct) as JsonObject ?? [];

    /// <summary>How often a call or management action is sent again after its connection failed (with the same call id).</summary>
    public const int Resends = 2;

    /// <summary>
    /// A function call or management action: it carries a call id (<see cref="NodeHeaders.CallId"/>), so the node runs
    /// it at most once however often it arrives, and is sent again with the same id when the connection failed, also
    /// after the request went out (the node then answers the first run's outcome). It carries how long this registry
    /// still waits (<see cref="NodeHeaders.TimeoutMs"/>), so a call that waits on the node's instance past it is not
    /// started there. All attempts together wait no longer than the client's timeout (RemoteExecutors:FunctionCallTimeout).
    /// </summary>
    private async Task<JsonNode?> SendOnceAsync(string path, JsonNode body, CancellationToken ct)
    {
        var callId = NodeHeaders.NewCallId();
        var started = TimeProvider.System.GetTimestamp();
        var sentBefore = false;
        for (var resent = 0; ; resent++)
        {
            try
            {
                return await SendAsync(HttpMethod.Post, path, JsonContent.Create(body, options: Json.Options), ct, callId, Left(callTimeout, started), sentBefore);
            }
            catch (ConnectionFailed e) when (resent < Resends)
            {
                sentBefore |= !RemoteExecutorClient.NeverReached(e.Failure);
            }
            catch (ConnectionFailed e)
            {
                throw e.Answer;
            }
        }
    }

    /// <summary>A call's connection failed (<see cref="Failure"/>); <see cref="Answer"/> is what the caller hears when it is not sent again.</summary>
    private sealed class ConnectionFailed(HttpRequestException failure, PolicyGridException answer) : Exception(answer.Message, failure)
    {
        public HttpRequestException Failure => failure;
        public PolicyGridException Answer => answer;
    }

    public async Task<bool> RemoveAsync(string name, CancellationToken ct = default)
    {
        try
        {
            await SendAsync(HttpMethod.Delete, $"deployments/{Uri.EscapeDataString(name)}", null, ct, left: Left(callTimeout, TimeProvider.System.GetTimestamp()));
            return true;
        }
        catch (PolicyGridException e) when (e.Status == 404)
        {
            return false;
        }
    }

    public Task<FunctionHostStatus?> StatusAsync(string name, CancellationToken ct = default) =>
        Task.FromResult<FunctionHostStatus?>(null);

    // The archive a bundle:// code names, from this registry's store to the node's. Other codes (http(s)://, and
    // file:// where the node's operator allows it) the node fetches itself; a bundle this registry does not hold
    // is left for the node to resolve, which answers 422 naming it if it cannot.
    private async Task SendBundleAsync(IBundleStore bundles, string? code, TimeSpan timeout, CancellationToken ct)
    {
        if (code is null || !code.StartsWith(BundleRef.Scheme, StringComparison.Ordinal)) return;
        var sha256 = code[BundleRef.Scheme.Length..];
        if (await bundles.GetAsync(sha256, ct) is not { } archive) return;
        var content = new ByteArrayContent(archive);
        content.Headers.ContentType = new MediaTypeHeaderValue(BundleMediaTypes.MediaType(archive));
        var stored = await SendAsync(HttpMethod.Post, "bundles", content, ct, left: Left(timeout, TimeProvider.System.GetTimestamp()), timeout: timeout);
        if (stored?["sha256"]?.GetValue<string>() is { } theirs && theirs != sha256)
            throw Problems.BackendError($"executor node {node} stored bundle {sha256} as {theirs}");
    }

    // The client's own timeout ran out (the caller did not give up): a call queued behind others on the node's instance,
    // or one whose node stopped answering. It was a 500 internal_error from the timeout's TaskCanceledException.
    private PolicyGridException NoAnswerInTime(Exception e, TimeSpan within) =>
        Problems.BackendUnavailable($"executor node {node} did not answer within {within.TotalSeconds:0.###} s; the call may still have run there", e);

    private async Task<JsonNode?> SendAsync(HttpMethod method, string path, HttpContent? content, CancellationToken ct,
        string? callId = null, TimeSpan? left = null, bool sentBefore = false, TimeSpan? timeout = null)
    {
        var within = timeout ?? callTimeout;
        using var request = new HttpRequestMessage(method, new Uri(node, path)) { Content = content };
        if (!string.IsNullOrEmpty(token)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        if (callId is not null) NodeHeaders.Name(request, callId, left);
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (left is { } bound) bounded.CancelAfter(bound);
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, bounded.Token);
        }
        catch (HttpRequestException e) when (callId is not null && (RemoteExecutorClient.NeverReached(e) || RemoteExecutorClient.LostAfterSending(e)))
        {
            throw new ConnectionFailed(e, RemoteExecutorClient.NeverReached(e) && !sentBefore
                ? Problems.BackendUnavailable($"executor node {node} is unreachable: {e.Message}", e)
                : Problems.BackendUnavailable(NodeHeaders.LostEveryTime(node, "before answering", e.Message), e));
        }
        catch (HttpRequestException e)
        {
            throw Problems.BackendUnavailable($"executor node {node} is unreachable: {e.Message}", e);
        }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
        {
            throw NoAnswerInTime(e, within);
        }
        using (response)
        {
            JsonObject? envelope = null;
            try
            {
                envelope = await response.Content.ReadFromJsonAsync<JsonObject>(ct);
            }
            catch (System.Text.Json.JsonException)
            {
                // Not an envelope; reported below with the status.
            }
            catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
            {
                throw NoAnswerInTime(e, within);
            }
            if (envelope?["success"]?.GetValue<bool>() == true) return envelope["data"];
            var message = envelope?["message"]?.GetValue<string>() ?? $"answered {(int)response.StatusCode} without an envelope";
            var code = envelope?["code"]?.GetValue<string>();
            var status = (int)response.StatusCode;
            // A route the node does not have: the executor's address is wrong, which its "no such route" 404 did not say.
            if (code is not null && NodeAnswers.IsWrongAddress(status, message))
                throw Problems.BackendError(NodeAnswers.WrongAddress(node, $"{status} ({message})"));
            // The node's own caller-facing errors (404, 422, 504, ...) pass through; anything else at that address
            // (a proxy's 404 page, its server faults) is ours to name.
            var retryAfter = response.Headers.RetryAfter?.Delta is { } delta
                ? (int)Math.Clamp(Math.Ceiling(delta.TotalSeconds), 0, RemoteExecutorClient.MaxRetryAfterSeconds) : (int?)null;
            if (code is not null && status is >= 400 and < 500 or 504)
                throw new PolicyGridException(status, code, $"executor node {node}: {message}") { RetryAfterSeconds = retryAfter };
            // The node's own "not now" (its store or workers unavailable): retry later, as it says, not a bad gateway.
            if (code is not null && status == 503)
                throw NodeUnavailable.From($"executor node {node}", message, retryAfter);
            if (status == 503)
                throw new PolicyGridException(503, ErrorCodes.BackendUnavailable,
                    $"executor node {node} is unavailable: it answered 503 without a PolicyGrid error envelope (a proxy in front of a node that is down?)")
                    { RetryAfterSeconds = retryAfter };
            throw status is >= 400 and < 500
                ? Problems.BackendError($"executor node {node} answered {status} without a PolicyGrid error envelope; is executor_host_uri the root address of a PolicyGrid executor node?")
                : Problems.BackendError($"executor node {node} failed ({status}): {message}");
        }
    }
}

/// <summary>
/// Reaches functions on <c>http(s)://</c> executor nodes, with the registry's client and node token. The graphs app
/// (Dapr shape) calls graph nodes on such executors through the same transport, without a bundle store.
/// </summary>
public sealed class RemoteFunctionHostTransport(IHttpClientFactory clients, IOptions<PolicyGrid.Runtime.PolicyRuntimeOptions> runtime, IBundleStore? bundles = null) : IFunctionHostTransport
{
    public bool CanHandle(Uri executorHostUri) => executorHostUri.Scheme is "http" or "https";

    public IFunctionHost For(Uri executorHostUri)
    {
        var root = executorHostUri.AbsoluteUri.EndsWith('/') ? executorHostUri : new Uri(executorHostUri.AbsoluteUri + "/");
        var remote = runtime.Value.RemoteExecutors;
        return new RemoteFunctionHost(clients.CreateClient(RemoteFunctionHost.HttpClientName), root, bundles, remote.TokenFor(executorHostUri),
            remote.FunctionCallTimeout, remote.FunctionDeployTimeout);
    }
}

public static class RemoteFunctionHosts
{
    /// <summary>
    /// The client and transport that reach functions on <c>http(s)://</c> executor nodes: the registry's (deploy, call,
    /// manage, remove) and the graphs app's (call a graph node), so both reach a node alike. The node token comes from
    /// <c>PolicyGrid:Runtime:RemoteExecutors</c>, bound by the host.
    /// </summary>
    public static IServiceCollection AddRemoteFunctionHosts(this IServiceCollection services)
    {
        // Without the HTTP client's own log: four lines per call at Information, and a node that is down logged the full
        // stack trace of every call (the caller hears the failure in its answer).
        services.AddHttpClient(RemoteFunctionHost.HttpClientName)
            // Each request is bounded by the host's own wait (FunctionCallTimeout, FunctionDeployTimeout), not the client's.
            .ConfigureHttpClient(client => client.Timeout = Timeout.InfiniteTimeSpan)
            .RemoveAllLoggers();
        services.TryAddSingleton<RemoteFunctionHostTransport>();
        return services;
    }
}
