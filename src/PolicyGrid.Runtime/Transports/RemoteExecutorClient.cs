using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Polly;
using Polly.CircuitBreaker;
using Polly.Timeout;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Runtime.Transports;

/// <summary>
/// Talks to one executor node: <c>POST {host}/execute_policy</c> and <c>POST {host}/management</c>
/// with the contract's bodies. A node that cannot be reached, drops the call or does not answer in
/// time answers 503 backend_unavailable (fast, once its circuit is open), and so does a node answering 503 (with its
/// message and Retry-After); a node failing with another 5xx,
/// redirecting, or answering something that is not a PolicyGrid envelope answers 502 backend_error;
/// the node's own 4xx answers (and its 504 policy_timeout) pass through with its code, message and
/// field errors. Every call is recorded in this server's decision log with the caller who made it:
/// the node keeps its own entry, under the identity this server presented to it.
/// </summary>
public sealed class RemoteExecutorClient(HttpClient http, Uri node, RemoteExecutorOptions remote, ExecutionOptions execution,
    DecisionLog? decisions = null, IDocumentStore? policies = null) : IPolicyExecutor
{
    public Task<PolicyResult> ExecuteAsync(ExecutionRequest request, CallerIdentity caller, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var contextKey = string.IsNullOrEmpty(request.ContextKey) ? request.PolicyRuleUri : request.ContextKey;
        return RecordedAsync("execute", request.PolicyRuleUri, caller, contextKey, CanonicalJson.Sha256(request.InputData),
            () => ForwardAsync(request.PolicyRuleUri, "execute_policy", request.ToNodeBody(), request.TimeoutSeconds, ct));
    }

    public Task<PolicyResult> ManageAsync(ManagementRequest request, CallerIdentity caller, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return RecordedAsync("management", request.PolicyRuleUri, caller, "", CanonicalJson.Sha256(JsonValue.Create(request.Action), request.Data),
            () => ForwardAsync(request.PolicyRuleUri, "management", request.ToNodeBody(), request.TimeoutSeconds, ct));
    }

    /// <summary>
    /// A node runs policies from its own registry. When this server holds the policy too, its status here
    /// counts as well: a policy retired here answers 410 without reaching the node (the contract: every execution
    /// of a retired policy is a 410), and one deprecated here answers with the Deprecation header.
    /// </summary>
    private async Task<PolicyResult> ForwardAsync(string policyRuleUri, string path, JsonObject body, double? timeoutSeconds, CancellationToken ct)
    {
        var status = await StatusHereAsync(policyRuleUri, ct);
        if (status == PolicyStatus.Retired) throw Problems.Retired($"policy '{policyRuleUri}' is retired");
        PolicyResult result;
        try
        {
            result = await PostAsync(path, body, timeoutSeconds, ct);
        }
        catch (PolicyGridException e) when (e.Status == 404 && e.Code == ErrorCodes.NotFound)
        {
            throw NotOnNode(policyRuleUri, status, e);
        }
        return status == PolicyStatus.Deprecated && !result.Deprecated ? result with { Deprecated = true } : result;
    }

    /// <summary>
    /// The node's 404, said as the node's: passed on word for word ("no policy 'p' is registered"), a caller took it for
    /// this server's registry lacking a policy it plainly holds. Status and code stay the contract's 404 not_found.
    /// </summary>
    private PolicyGridException NotOnNode(string policyRuleUri, string? statusHere, PolicyGridException e)
    {
        var said = e.Message;
        string message;
        if (!said.Contains($"'{policyRuleUri}'", StringComparison.Ordinal))
            message = $"executor node {node} answered 404: {said}";
        else if (statusHere is not null)
            message = $"policy '{policyRuleUri}' is registered on this server but not in the registry of executor node {node}, which runs " +
                $"policies from its own registry: register it on the node too (the node answered: {said})";
        else if (policies is not null)
            message = $"policy '{policyRuleUri}' is registered neither on this server nor on executor node {node}, which runs policies " +
                $"from its own registry (the node answered: {said})";
        else
            message = $"executor node {node} has no policy '{policyRuleUri}' in its own registry, which is where a node looks policies up " +
                $"(the node answered: {said})";
        return new PolicyGridException(404, ErrorCodes.NotFound, message, e.Errors, e) { RetryAfterSeconds = e.RetryAfterSeconds };
    }

    private async Task<string?> StatusHereAsync(string policyRuleUri, CancellationToken ct)
    {
        if (policies is null) return null;
        var stored = await policies.GetAsync(Collections.Policies, Uri.UnescapeDataString(policyRuleUri), ct);
        return stored is null ? null : PolicyStatus.Of(stored.Body);
    }

    // The bundle that ran is the node's to know; this entry says who asked this server, and what came of it.
    private Task<PolicyResult> RecordedAsync(string kind, string uri, CallerIdentity caller, string contextKey, string inputSha, Func<Task<PolicyResult>> call) =>
        decisions is null ? call() : new AuditTrail(kind, uri, caller, contextKey, inputSha).RunAsync(decisions, call);

    private async Task<PolicyResult> PostAsync(string path, JsonObject body, double? timeoutSeconds, CancellationToken ct)
    {
        var target = new Uri(node.AbsoluteUri.TrimEnd('/') + "/" + path);
        // The node enforces the policy's deadline; we only wait that long plus the network's share.
        var policyDeadline = timeoutSeconds is > 0 ? TimeSpan.FromSeconds(timeoutSeconds.Value) : execution.MaxTimeout;
        var patience = policyDeadline + remote.Overhead;
        // One id for this call, repeated by every retry of it: the node runs it at most once, so a connection lost after
        // the request went out can be retried (the resilience handler's retries, AddExecutorNodeClient, and ours below).
        var callId = NodeHeaders.NewCallId();
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(patience);
        var started = TimeProvider.System.GetTimestamp();
        // Our own context for the pipeline, so that we hear whether an attempt before the last one reached the node.
        var attempts = ResilienceContextPool.Shared.Get(wait.Token);
        try
        {
            for (var resent = 0; ; resent++)
            {
                using var message = new HttpRequestMessage(HttpMethod.Post, target) { Content = JsonContent.Create(body) };
                if (remote.TokenFor(node) is { } token) message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
                // How long we still wait: a call queued on the node past it is not started there.
                NodeHeaders.Name(message, callId, patience - TimeProvider.System.GetElapsedTime(started));
                message.SetResilienceContext(attempts);
                try
                {
                    return await SendAndReadAsync(message, timeoutSeconds, policyDeadline, patience, attempts, wait.Token, ct);
                }
                catch (AnswerLost) when (resent < remote.ConnectRetries)
                {
                    // The node answered and the connection went while its answer came: the same id again gets that answer.
                    attempts.Properties.Set(LostAfterSendingOnce, true);
                }
                catch (AnswerLost e)
                {
                    throw Problems.BackendUnavailable(NodeHeaders.LostEveryTime(node, "while answering", Innermost(e.InnerException!)), e.InnerException);
                }
            }
        }
        finally
        {
            ResilienceContextPool.Shared.Return(attempts);
        }
    }

    /// <summary>The connection went while the node's answer was read: the call ran there (see <see cref="PostAsync"/>).</summary>
    private sealed class AnswerLost(Exception inner) : Exception(inner.Message, inner);

    /// <summary>Set on a call's resilience context when an attempt of it was lost after it went out (it may have run).</summary>
    public static readonly ResiliencePropertyKey<bool> LostAfterSendingOnce = new("PolicyGrid.LostAfterSending");

    private async Task<PolicyResult> SendAndReadAsync(HttpRequestMessage message, double? timeoutSeconds, TimeSpan policyDeadline, TimeSpan patience,
        ResilienceContext attempts, CancellationToken waitToken, CancellationToken ct)
    {
        HttpResponseMessage response;
        try
        {
            // Headers only: the body is read below, no further than RemoteExecutors:MaxAnswerBytes.
            response = await http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, waitToken);
        }
        catch (BrokenCircuitException e) when (SentBefore(attempts))
        {
            throw Problems.BackendUnavailable($"executor node {node} dropped the call before answering{LastFailure(attempts)} and its circuit opened " +
                $"before the call could be sent again (failing fast until it recovers); it may have run there, at most once", e);
        }
        catch (BrokenCircuitException e) when (attempts.Properties.TryGetValue(LastAttemptFailure, out var failed))
        {
            // This call's own attempts opened the circuit: what they met is the news, not the open circuit.
            throw Problems.BackendUnavailable($"executor node {node} could not be reached: {Innermost(failed)} (its circuit is now open: " +
                "calls fail fast until it recovers)", e);
        }
        catch (BrokenCircuitException e)
        {
            throw Problems.BackendUnavailable($"executor node {node} is not answering (failing fast until it recovers)", e);
        }
        catch (HttpRequestException e) when (AnsweredUnreadably(e))
        {
            // Something answered at that address, but not HTTP this server can read (another service on that port, an answer
            // head past the client's limits): the node's fault, as a garbled envelope is. It used to be told as a call dropped
            // and sent again, though it was sent once, and marked the executor unhealthy.
            throw Problems.BackendError($"executor node {node} answered with something that is not a readable HTTP answer ({Innermost(e)}); " +
                "is executor_host_uri the address of a PolicyGrid executor node?", e);
        }
        catch (HttpRequestException e) when (NeverReached(e) && !SentBefore(attempts))
        {
            throw Problems.BackendUnavailable($"executor node {node} could not be reached: {Innermost(e)}", e);
        }
        catch (HttpRequestException e)
        {
            // Sent again with the same call id as long as the retries lasted: the node ran it at most once.
            throw Problems.BackendUnavailable(NodeHeaders.LostEveryTime(node, "before answering", Innermost(e)), e);
        }
        catch (Exception e) when (e is TimeoutRejectedException || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            throw NoAnswerInTime(timeoutSeconds, policyDeadline, patience, e);
        }
        using (response)
        {
            JsonObject? envelope;
            try
            {
                envelope = await ReadEnvelopeAsync(response, remote.MaxAnswerBytes, waitToken);
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                throw new AnswerLost(e);
            }
            catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
            {
                throw NoAnswerInTime(timeoutSeconds, policyDeadline, patience, e);
            }
            if (response.IsSuccessStatusCode)
            {
                if (envelope?["success"]?.GetValueKind() == JsonValueKind.True && envelope["data"] is JsonObject data)
                    return new PolicyResult((JsonObject)data.DeepClone(), response.Headers.Contains("Deprecation")) { Warnings = NodeAnswers.Warnings(envelope) };
                throw Problems.BackendError($"executor node {node} answered {(int)response.StatusCode} without a result envelope");
            }
            throw Failure(response, envelope);
        }
    }

    /// <summary>Set on a call's resilience context to what its last failed attempt met, before it was sent again.</summary>
    public static readonly ResiliencePropertyKey<HttpRequestException> LastAttemptFailure = new("PolicyGrid.LastAttemptFailure");

    private static string LastFailure(ResilienceContext attempts) =>
        attempts.Properties.TryGetValue(LastAttemptFailure, out var failed) ? $" ({Innermost(failed)})" : "";

    private static bool SentBefore(ResilienceContext attempts) => attempts.Properties.TryGetValue(LostAfterSendingOnce, out var lost) && lost;

    /// <summary>
    /// Only a call that never reached the node is safe to send again (or to report as "could not be reached"). A TLS
    /// handshake that failed (an https:// address on a plain HTTP port, a certificate not trusted) sent nothing either.
    /// </summary>
    public static bool NeverReached(HttpRequestException e) =>
        e.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError;

    /// <summary>The node answered, but its answer's head is not HTTP this client reads: no outage, and no reason to send again.</summary>
    public static bool AnsweredUnreadably(HttpRequestException e) =>
        e.HttpRequestError is HttpRequestError.InvalidResponse or HttpRequestError.ConfigurationLimitExceeded;

    /// <summary>
    /// The connection went (closed, reset, or the answer ended early) after the request went out: the node may have run
    /// the call. Safe to send again only with the same call id, which the node runs at most once.
    /// </summary>
    public static bool LostAfterSending(HttpRequestException e) =>
        !NeverReached(e) && (e.HttpRequestError is HttpRequestError.ResponseEnded
            || (e.HttpRequestError is HttpRequestError.Unknown && e.InnerException is IOException or System.Net.Sockets.SocketException));

    private PolicyGridException Failure(HttpResponseMessage response, JsonObject? envelope)
    {
        var status = (int)response.StatusCode;
        var reason = response.ReasonPhrase is { Length: > 0 } phrase ? $"{status} {phrase}" : status.ToString(System.Globalization.CultureInfo.InvariantCulture);
        // A PolicyGrid node's refusal is an envelope with success false and a code; anything else came from something else at that address.
        var code = envelope?["success"]?.GetValueKind() == JsonValueKind.False && envelope["code"]?.GetValueKind() == JsonValueKind.String
            ? envelope["code"]!.GetValue<string>() : "";
        var text = envelope?["message"]?.GetValueKind() == JsonValueKind.String ? envelope["message"]!.GetValue<string>() : "";
        var retryAfter = RetryAfterSeconds(response);

        if (status is 401 or 403)
            // The node judged this server's credentials (PolicyGrid:Runtime:RemoteExecutors:Token/TokenNodes), not the caller's: say whose.
            return new PolicyGridException(status, code.Length > 0 ? code : CodeFor(response.StatusCode),
                $"executor node {node} refused this server's call ({reason}{(text.Length > 0 ? ": " + text : "")}); {remote.TokenSentTo(node)}");
        if (status == 429)
            return new PolicyGridException(429, code.Length > 0 ? code : ErrorCodes.Overloaded, text.Length > 0 ? text : $"executor node {node} is overloaded ({reason})")
                { RetryAfterSeconds = retryAfter };
        if (status == 503 && code.Length > 0)
            // The node's own "not now" (its store, bundle source or workers unavailable): a caller retries later, as it
            // says, rather than hearing a bad gateway. Not retried here: the node's ledger does not keep a 503.
            return NodeUnavailable.From($"executor node {node}", text.Length > 0 ? text : reason, retryAfter);
        if (status == 503)
            // Something in front of the node (a proxy or gateway) says it cannot reach it: the node is down for us.
            return new PolicyGridException(503, ErrorCodes.BackendUnavailable,
                $"executor node {node} is unavailable: it answered {reason} without a PolicyGrid error envelope (a proxy in front of a node that is down?)")
                { RetryAfterSeconds = retryAfter };
        if (code.Length > 0 && NodeAnswers.IsWrongAddress(status, text))
            // The node's "no such route" came back as a 404 not_found, as if the policy were missing on the node.
            return Problems.BackendError(NodeAnswers.WrongAddress(node, text.Length > 0 ? $"{reason} ({text})" : reason));
        if (code.Length > 0 && (status is >= 400 and < 500 || (status == 504 && code == ErrorCodes.PolicyTimeout)))
            // The node's own verdict on the caller's request (or the policy's deadline): pass it on as is.
            return new PolicyGridException(status, code, text, FieldErrors(envelope!)) { RetryAfterSeconds = retryAfter };
        if (status is >= 300 and < 400)
            return Problems.BackendError($"executor node {node} answered {reason}" +
                $"{(response.Headers.Location is { } location ? " pointing at " + location : "")}; redirects are not followed: register the address the node answers on");
        if (status < 500)
            return Problems.BackendError($"executor node {node} answered {reason} without a PolicyGrid error envelope; is executor_host_uri the root address of a PolicyGrid executor node?");
        return Problems.BackendError($"executor node {node} failed with {status}{(code.Length > 0 ? " " + code : "")}: {(text.Length > 0 ? text : response.ReasonPhrase ?? "")}");
    }

    private static List<FieldError> FieldErrors(JsonObject envelope)
    {
        var errors = new List<FieldError>();
        if (envelope["errors"] is not JsonArray list) return errors;
        foreach (var item in list)
            if (item is JsonObject e && e["path"]?.GetValueKind() == JsonValueKind.String && e["message"]?.GetValueKind() == JsonValueKind.String)
                errors.Add(new FieldError(e["path"]!.GetValue<string>(), e["message"]!.GetValue<string>()));
        return errors;
    }

    /// <summary>Longest Retry-After passed on: a node's clock or header gone wrong should not tell callers to wait for days.</summary>
    public const int MaxRetryAfterSeconds = 3600;

    // Retry-After is seconds or an HTTP date; either way the caller hears seconds.
    private static int? RetryAfterSeconds(HttpResponseMessage response) => response.Headers.RetryAfter switch
    {
        { Delta: { } delta } => (int)Math.Clamp(Math.Ceiling(delta.TotalSeconds), 0, MaxRetryAfterSeconds),
        { Date: { } date } => (int)Math.Clamp(Math.Ceiling((date - (response.Headers.Date ?? DateTimeOffset.UtcNow)).TotalSeconds), 0, MaxRetryAfterSeconds),
        _ => null,
    };

    private static string Innermost(Exception e)
    {
        while (e.InnerException is { } inner) e = inner;
        return e.Message;
    }

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);

    private PolicyGridException NoAnswerInTime(double? timeoutSeconds, TimeSpan policyDeadline, TimeSpan patience, Exception e) =>
        Problems.BackendUnavailable($"executor node {node} did not answer within {Seconds(patience)} s " +
            $"({(timeoutSeconds is > 0 ? "timeout_seconds" : "the longest policy deadline")} {Seconds(policyDeadline)} s plus RemoteExecutors:Overhead {Seconds(remote.Overhead)} s)", e);

    // The answer, parsed, if it is a JSON object (null for anything else); an answer over the limit is refused unread.
    private async Task<JsonObject?> ReadEnvelopeAsync(HttpResponseMessage response, long maxBytes, CancellationToken ct)
    {
        if (response.Content.Headers.ContentLength > maxBytes) throw TooLarge(response, maxBytes);
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        using var buffer = await BoundedRead.ReadAsync(body, maxBytes, () => TooLarge(response, maxBytes), ct);
        return NodeAnswers.TryParse(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    }

    private PolicyGridException TooLarge(HttpResponseMessage response, long maxBytes) =>
        Problems.BackendError($"executor node {node} answered {(int)response.StatusCode} with more than {maxBytes} bytes (RemoteExecutors:MaxAnswerBytes); the answer was not read");

    private static string CodeFor(HttpStatusCode status) => status switch
    {
        HttpStatusCode.Unauthorized => ErrorCodes.Unauthorized,
        HttpStatusCode.Forbidden => ErrorCodes.Forbidden,
        _ => ErrorCodes.BadRequest,
    };
}
