using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PolicyGrid.Sdk.Client;

/// <summary>
/// Typed client over the PolicyGrid public API (contract/API.md). Each call answers the envelope's
/// <c>data</c>; a failure envelope throws <see cref="PolicyGridApiException"/> with the server's status,
/// <c>code</c> and message; a server that cannot be reached within <see cref="PolicyGridClientOptions.Timeout"/>
/// throws <see cref="PolicyGridUnreachableException"/> (fail closed). Shapes owned by other areas
/// (functions, graphs, jobs, decisions) come back as <see cref="JsonNode"/>.
/// </summary>
public sealed partial class PolicyGridClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly string? _token;
    private readonly Action<PolicyGridWarning>? _onWarning;

    public PolicyGridClient(PolicyGridClientOptions? options = null)
        : this(new HttpClient(new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            // A call may wait for its answer longer than Timeout (a long poll, a policy given timeout_seconds); a server
            // that is not there still fails it within Timeout.
            ConnectTimeout = (options ?? new()).Timeout is var t && t > TimeSpan.Zero ? t : System.Threading.Timeout.InfiniteTimeSpan,
        }), options ?? new(), ownsHttp: true)
    {
    }

    /// <summary>
    /// What a call that gives the server <c>timeout_seconds</c> waits for on top of <see cref="Timeout"/>: that deadline,
    /// plus this for the server's own work around the policy (queueing, loading its bundle, the decision log).
    /// </summary>
    public static readonly TimeSpan ServerMargin = TimeSpan.FromSeconds(5);

    // The wait a server is asked for by timeout_seconds; nothing for none, or for one it refuses at once.
    internal static TimeSpan ServerTime(double? timeoutSeconds) =>
        timeoutSeconds is { } t && t > 0 && t < TimeSpan.MaxValue.TotalSeconds / 2 ? TimeSpan.FromSeconds(t) + ServerMargin : TimeSpan.Zero;

    /// <param name="token">Sent as <c>Authorization: Bearer</c>; null (the default) reads POLICYGRID_TOKEN, as
    /// <see cref="PolicyGridClientOptions.Token"/> and the Python SDK's <c>token=None</c> do; "" sends none.</param>
    public PolicyGridClient(Uri server, string? token = null, TimeSpan? timeout = null)
        : this(new PolicyGridClientOptions { Server = server, Token = token ?? PolicyGridClientOptions.TokenFromEnvironment(), Timeout = timeout ?? TimeSpan.FromSeconds(10) })
    {
    }

    /// <summary>Uses a caller-owned <see cref="HttpClient"/> (e.g. a test server's); <paramref name="options"/>.Server is the base address.</summary>
    public PolicyGridClient(HttpClient http, PolicyGridClientOptions options) : this(http, options, ownsHttp: false)
    {
    }

    private PolicyGridClient(HttpClient http, PolicyGridClientOptions options, bool ownsHttp)
    {
        ArgumentNullException.ThrowIfNull(http);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Server);
        // Refused here: a relative or non-http address fails every call later with a message that does not name it.
        if (!options.Server.IsAbsoluteUri || options.Server.Scheme is not ("http" or "https"))
            throw new ArgumentException($"Server (by default POLICYGRID_SERVER) must be an absolute http(s) URL such as {PolicyGridClientOptions.DefaultServer}, not '{options.Server.OriginalString}'", nameof(options));
        if (options.Timeout <= TimeSpan.Zero && options.Timeout != System.Threading.Timeout.InfiniteTimeSpan)
            throw new ArgumentException($"Timeout must be above zero (or Timeout.InfiniteTimeSpan), not {options.Timeout}", nameof(options));
        _http = http;
        _ownsHttp = ownsHttp;
        if (ownsHttp) _http.Timeout = System.Threading.Timeout.InfiniteTimeSpan; // ours below tells timeout from cancellation
        Server = options.Server;
        Timeout = options.Timeout;
        _token = options.Token;
        _onWarning = options.OnWarning;
    }

    public Uri Server { get; }
    public TimeSpan Timeout { get; }

    /// <summary>Sends one request and decodes the envelope. The building block of every other call.</summary>
    public Task<PolicyGridResponse> SendAsync(HttpMethod method, string pathOrUrl, JsonNode? body = null,
        IReadOnlyDictionary<string, string>? headers = null, CancellationToken ct = default) =>
        SendBodyAsync(method, pathOrUrl, body, headers, ct, TimeSpan.Zero);

    private async Task<PolicyGridResponse> SendBodyAsync(HttpMethod method, string pathOrUrl, JsonNode? body,
        IReadOnlyDictionary<string, string>? headers, CancellationToken ct, TimeSpan held = default)
    {
        using var content = body is null ? (method == HttpMethod.Post || method == HttpMethod.Put ? new StringContent("", Encoding.UTF8, "application/json") : null)
            : new StringContent(JsonOf(body), Encoding.UTF8, "application/json");
        return await SendContentAsync(method, pathOrUrl, content, headers, ct, held);
    }

    // A body JSON cannot carry (a NaN or infinite number put into a node, nesting past the writer's 1000 levels) is the
    // caller's 400, as the server would answer it, not the serializer's ArgumentException or InvalidOperationException;
    // so is text holding a lone surrogate, which the writer silently sent as U+FFFD, and nesting the server refuses.
    private static string JsonOf(JsonNode body)
    {
        Evaluation.JsonText.EnsureJson(body, "body", wholeBody: true);
        try
        {
            return body.ToJsonString();
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            throw new PolicyGridApiException(400, "validation_failed", $"the request body cannot be written as JSON: {e.Message}", inner: e);
        }
    }

    /// <param name="held">How long the server was asked to hold its answer (a long poll): waited for on top of <see cref="Timeout"/>.</param>
    private async Task<PolicyGridResponse> SendContentAsync(HttpMethod method, string pathOrUrl, HttpContent? content,
        IReadOnlyDictionary<string, string>? headers, CancellationToken ct, TimeSpan held = default)
    {
        var url = Resolve(pathOrUrl);
        using var request = new HttpRequestMessage(method, url) { Content = content };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        // The token goes to our server only, never to a bundle URL elsewhere.
        if (!string.IsNullOrEmpty(_token) && SameOrigin(url, Server)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        if (headers is not null)
            foreach (var (k, v) in headers) request.Headers.TryAddWithoutValidation(k, v);
        // A server refuses a body past its limit (413) from its Content-Length, before reading it, and closes. Sent
        // outright, the rest of a large body then failed to send and the call raised PolicyGridUnreachableException
        // ("cannot reach", a 503 callers retry) instead of that 413; asked to wait for "100 Continue" first, the client
        // reads the 413 and sends nothing more.
        if (content?.Headers.ContentLength > ExpectContinueFrom) request.Headers.ExpectContinue = true;

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var patience = Patience(held);
        timeout.CancelAfter(patience);
        HttpResponseMessage response;
        byte[] payload;
        try
        {
            response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, timeout.Token);
            payload = await response.Content.ReadAsByteArrayAsync(timeout.Token);
        }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested && !timeout.IsCancellationRequested)
        {
            // The handler's ConnectTimeout (Timeout), before the call's own patience ran out.
            throw new PolicyGridUnreachableException(Server, $"could not connect within {Timeout.TotalSeconds:0.###} s", e);
        }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
        {
            throw new PolicyGridUnreachableException(Server, $"no answer within {patience.TotalSeconds:0.###} s", e);
        }
        catch (HttpRequestException e)
        {
            throw new PolicyGridUnreachableException(Server, e.Message, e)
            {
                // Nothing listens there: the usual cause is a server not started yet, or the wrong address. Say the fix.
                Hint = e.InnerException is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.ConnectionRefused }
                    ? "is `policygrid serve` running there? point the client elsewhere with PolicyGridClientOptions.Server or the server "
                      + "argument of new PolicyGridClient(server, ...); the options default to the environment variable POLICYGRID_SERVER"
                    : null,
            };
        }
        PolicyGridResponse decoded;
        using (response)
        {
            decoded = Decode(response, payload, url, TokenHint(url));
        }
        if (_onWarning is { } warn)
            foreach (var warning in decoded.Warnings) warn(new PolicyGridWarning(method.Method, url.AbsolutePath, warning));
        return decoded;
    }

    /// <summary>Bodies larger than this (the server's default body limit) ask the server to accept them before they are sent.</summary>
    internal const long ExpectContinueFrom = 1 << 20;

    // CancelAfter takes at most uint.MaxValue - 1 milliseconds (~49 days); a server holds a long poll a day at most.
    private static readonly TimeSpan LongestPatience = TimeSpan.FromDays(40);

    private TimeSpan Patience(TimeSpan held) =>
        Timeout == System.Threading.Timeout.InfiniteTimeSpan || held <= TimeSpan.Zero ? Timeout
            : held >= LongestPatience - Timeout ? LongestPatience : Timeout + held;

    private Uri Resolve(string pathOrUrl)
    {
        if (pathOrUrl.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || pathOrUrl.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            return new Uri(pathOrUrl);
        var baseText = Server.ToString().TrimEnd('/');
        return new Uri(baseText + (pathOrUrl.StartsWith('/') ? pathOrUrl : "/" + pathOrUrl));
    }

    private static bool SameOrigin(Uri a, Uri b) =>
        string.Equals(a.Scheme, b.Scheme, StringComparison.OrdinalIgnoreCase)
        && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    // The server's 401 speaks HTTP ("send 'Authorization: Bearer <token>'"); an SDK caller gives the token to the client.
    // Only for our own server: the token is never sent elsewhere (a bundle URL), so it is no fix there.
    private string? TokenHint(Uri url) => !SameOrigin(url, Server) ? null
        : string.IsNullOrEmpty(_token)
            ? "give the client an API token with PolicyGridClientOptions.Token or the token argument of new PolicyGridClient(server, token); "
              + "both default to the environment variable POLICYGRID_TOKEN"
            : "the token given with PolicyGridClientOptions.Token, the token argument or POLICYGRID_TOKEN is not one the server accepts";

    private static PolicyGridResponse Decode(HttpResponseMessage response, byte[] payload, Uri url, string? tokenHint = null)
    {
        var status = (int)response.StatusCode;
        var mediaType = response.Content.Headers.ContentType?.MediaType ?? "";
        var isJson = mediaType.Contains("json", StringComparison.OrdinalIgnoreCase);
        if (status == 200 && !isJson) return new PolicyGridResponse(status, null, payload, response.Headers, response.Content.Headers);

        JsonNode? parsed = null;
        if (payload.Length > 0)
        {
            try { parsed = JsonNode.Parse(payload); }
            catch (JsonException) { parsed = null; }
        }
        if (parsed is JsonObject envelope && envelope.TryGetPropertyValue("success", out var success))
        {
            if (success is JsonValue v && v.GetValueKind() == JsonValueKind.True && status == 200)
                return new PolicyGridResponse(status, envelope["data"], payload, response.Headers, response.Content.Headers)
                {
                    Enveloped = true,
                    Warnings = envelope["warnings"] is JsonArray warnings ? [.. warnings.Select(w => w?.ToString() ?? "")] : [],
                };
            var code = envelope["code"] is JsonValue c && c.GetValueKind() == JsonValueKind.String ? c.GetValue<string>() : CodeFor(status);
            var message = envelope["message"] is JsonValue m && m.GetValueKind() == JsonValueKind.String ? m.GetValue<string>() : $"HTTP {status}";
            throw new PolicyGridApiException(status, code, message, envelope["errors"] as JsonArray is { } errs ? (JsonArray)errs.DeepClone() : null)
            {
                RetryAfterSeconds = RetryAfter(response),
                Hint = status == 401 ? tokenHint : null,
            };
        }
        if (status == 200) return new PolicyGridResponse(status, parsed, payload, response.Headers, response.Content.Headers);
        // A proxy's error page is many lines of HTML: one line of it, so a log line or a CLI's stderr stays one line.
        var text = string.Join(' ', Encoding.UTF8.GetString(payload.AsSpan(0, Math.Min(payload.Length, 300))).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
        throw new PolicyGridApiException(status, CodeFor(status), $"{url} answered HTTP {status} without an envelope: {(text.Length == 0 ? "(an empty body)" : text)}")
        {
            RetryAfterSeconds = RetryAfter(response),
        };
    }

    private static int? RetryAfter(HttpResponseMessage response) =>
        response.Headers.RetryAfter?.Delta is { } d ? (int)Math.Ceiling(d.TotalSeconds) : null;

    private static string CodeFor(int status) => status switch
    {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        412 => "conflict", // a precondition (If-Match) failed at a proxy or gateway; PolicyGrid itself answers 409
        410 => "retired",
        413 => "too_large",
        422 => "policy_error",
        429 => "overloaded",
        503 => "backend_unavailable",
        504 => "policy_timeout",
        _ => "backend_error",
    };

    /// <summary>Escapes a path segment but keeps ':' readable (policy URIs appear unescaped in paths).</summary>
    internal static string Segment(string value) => Uri.EscapeDataString(value).Replace("%3A", ":", StringComparison.Ordinal);

    // Every route read here answers the envelope: a 200 without one (a proxy's page, another server) is no answer at all,
    // and never a policy's result or a management command's null.
    private async Task<JsonNode?> DataAsync(HttpMethod method, string path, JsonNode? body, CancellationToken ct,
        IReadOnlyDictionary<string, string>? headers = null, TimeSpan held = default) =>
        (await EnvelopedAsync(method, path, body, ct, headers, held)).Data;

    private async Task<PolicyGridResponse> EnvelopedAsync(HttpMethod method, string path, JsonNode? body, CancellationToken ct,
        IReadOnlyDictionary<string, string>? headers = null, TimeSpan held = default)
    {
        var response = await SendBodyAsync(method, path, body, headers, ct, held);
        return response.Enveloped ? response : throw new PolicyGridApiException(502, "backend_error",
            $"{method} {path} on {Server} answered {response.Status} without a PolicyGrid envelope ({response.ContentHeaders.ContentType?.MediaType ?? "no Content-Type"}): is the server a PolicyGrid?");
    }

    private async Task<JsonObject> ObjectAsync(HttpMethod method, string path, JsonNode? body, CancellationToken ct, IReadOnlyDictionary<string, string>? headers = null)
    {
        var data = (await SendAsync(method, path, body, headers, ct)).Data;
        return data as JsonObject ?? throw new PolicyGridApiException(502, "backend_error", $"{method} {path} answered {data?.GetValueKind().ToString() ?? "null"} where a document was expected");
    }

    private async Task<DocumentRevision> RevisionAsync(string path, CancellationToken ct)
    {
        var (document, response) = await DocumentAsync(path, ct);
        return new DocumentRevision(document, response.ETag);
    }

    // GET of one document, with the response its headers (ETag, Deprecation) come from.
    private async Task<(JsonObject Document, PolicyGridResponse Response)> DocumentAsync(string path, CancellationToken ct)
    {
        var response = await SendAsync(HttpMethod.Get, path, null, null, ct);
        return (response.Data as JsonObject ?? throw new PolicyGridApiException(502, "backend_error", $"GET {path} did not answer a document"), response);
    }

    /// <summary>The If-Match header of a conditional write, or none.</summary>
    private static Dictionary<string, string>? IfMatch(string? etag) =>
        etag is null ? null : new Dictionary<string, string> { ["If-Match"] = etag };

    private async Task<JsonArray> ArrayAsync(string path, JsonObject? filter, QueryOptions? paging, CancellationToken ct)
    {
        var data = (await SendAsync(HttpMethod.Post, path + (paging?.ToQueryString() ?? ""), filter ?? new JsonObject(), null, ct)).Data;
        return data as JsonArray ?? throw new PolicyGridApiException(502, "backend_error", $"POST {path} answered {data?.GetValueKind().ToString() ?? "null"} where a list was expected");
    }

    public void Dispose()
    {
        if (_ownsHttp) _http.Dispose();
    }
}

/// <summary>A decoded success: the envelope's <see cref="Data"/> (or <see cref="Body"/> bytes for non-JSON answers) and headers.</summary>
public sealed record PolicyGridResponse(int Status, JsonNode? Data, byte[] Body, HttpResponseHeaders Headers, HttpContentHeaders ContentHeaders)
{
    /// <summary>Whether the answer was the API's envelope (<see cref="Data"/> is then its <c>data</c>), not a bare body.</summary>
    public bool Enveloped { get; init; }

    /// <summary>The envelope's <c>warnings</c>: the request was done, but something in it will not work yet or was ignored.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    public string? ETag => Headers.ETag?.ToString() ?? (Headers.TryGetValues("ETag", out var v) ? v.FirstOrDefault() : null);
    public bool Deprecated => Headers.Contains("Deprecation");
}
