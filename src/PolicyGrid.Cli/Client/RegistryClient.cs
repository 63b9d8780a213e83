using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PolicyGrid.Cli.Client;

/// <summary>A server's failure as the envelope told it (or as the transport failed).</summary>
public sealed class ServerFailureException(int status, string code, string message, int? retryAfterSeconds = null) : Exception(message)
{
    public int Status { get; } = status;
    public string Code { get; } = code;

    /// <summary>The answer's Retry-After (a 429 or 503 that knows when to try again), in seconds.</summary>
    public int? RetryAfterSeconds { get; } = retryAfterSeconds;
}

/// <summary>One HTTP answer: the envelope's <c>data</c>, the ETag and the headers worth showing.</summary>
public sealed record ServerAnswer(JsonNode? Data, string? ETag, bool Deprecated);

/// <summary>
/// Talks the contract to a running server: sends JSON, unwraps the envelope, turns failures into
/// <see cref="ServerFailureException"/> with the server's own message. A success's <c>warnings</c> (the request was
/// done, but something in it will not work, or was ignored) go to <paramref name="warn"/> as they arrive.
/// </summary>
public sealed class RegistryClient(HttpClient http, string? token, TimeSpan? answerTimeout = null, Action<string>? warn = null)
{
    public Uri Server => http.BaseAddress!;

    public Task<ServerAnswer> GetAsync(string path, CancellationToken ct) => SendAsync(HttpMethod.Get, path, null, null, ct);
    public Task<ServerAnswer> PostAsync(string path, JsonNode? body, CancellationToken ct) => SendAsync(HttpMethod.Post, path, body, null, ct);
    public Task<ServerAnswer> PutAsync(string path, JsonNode body, string? ifMatch, CancellationToken ct) => SendAsync(HttpMethod.Put, path, body, ifMatch, ct);
    public Task<ServerAnswer> DeleteAsync(string path, CancellationToken ct) => SendAsync(HttpMethod.Delete, path, null, null, ct);

    public async Task<ServerAnswer> SendAsync(HttpMethod method, string path, JsonNode? body, string? ifMatch, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path.TrimStart('/'));
        if (body is not null) request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        if (ifMatch is not null) request.Headers.TryAddWithoutValidation("If-Match", ifMatch);
        return await ExchangeAsync(request, ct);
    }

    public async Task<ServerAnswer> UploadAsync(string path, HttpContent content, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path.TrimStart('/')) { Content = content };
        return await ExchangeAsync(request, ct);
    }

    /// <summary>GETs an answer that is text, not the envelope (a graph's diagram); a failure is still told by the envelope.</summary>
    public async Task<string> GetTextAsync(string path, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path.TrimStart('/'));
        using var response = await SendRawAsync(request, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        if (response.IsSuccessStatusCode) return text;
        throw Failure(response, Envelope(text), text);
    }

    private async Task<ServerAnswer> ExchangeAsync(HttpRequestMessage request, CancellationToken ct)
    {
        using var response = await SendRawAsync(request, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        var envelope = Envelope(text);
        if (envelope is JsonObject o && o["success"]?.GetValueKind() == JsonValueKind.True && response.StatusCode == HttpStatusCode.OK)
        {
            if (o["warnings"] is JsonArray warnings && warn is not null)
                foreach (var warning in warnings) warn(warning?.ToString() ?? "");
            return new ServerAnswer(o["data"], response.Headers.ETag?.ToString(), response.Headers.Contains("Deprecation"));
        }
        throw Failure(response, envelope, text);
    }

    private static JsonNode? Envelope(string text)
    {
        try { return text.Length > 0 ? JsonNode.Parse(text) : null; }
        catch (JsonException) { return null; }
    }

    private static ServerFailureException Failure(HttpResponseMessage response, JsonNode? envelope, string text)
    {
        var retryAfter = response.Headers.RetryAfter?.Delta is { } delay ? (int)Math.Ceiling(delay.TotalSeconds) : (int?)null;
        if (envelope is JsonObject failure && failure["success"]?.GetValueKind() == JsonValueKind.False)
            return new ServerFailureException((int)response.StatusCode, failure["code"]?.ToString() ?? "", failure["message"]?.ToString() ?? text, retryAfter);
        var body = OneLine(text);
        return new ServerFailureException((int)response.StatusCode, "unexpected",
            $"the server answered {(int)response.StatusCode} without a PolicyGrid envelope: {(body.Length == 0 ? "(an empty body)" : Truncate(body))}", retryAfter);
    }

    /// <summary>A proxy's error page is many lines of HTML: its words on one line, so the error stays one line.</summary>
    public static string OneLine(string text) => string.Join(' ', text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));

    /// <summary>
    /// Why a request reached no server, in one line. HttpClient's own message for a failed TLS handshake is "The SSL
    /// connection could not be established, see inner exception", which a CLI user cannot see.
    /// </summary>
    public static string Unreachable(HttpRequestException e, Uri server)
    {
        if (e.InnerException is System.Security.Authentication.AuthenticationException tls)
            return $"cannot reach the server at {server}: the TLS handshake failed ({(tls.InnerException ?? tls).Message})"
                + (server.Scheme == "https" ? $"; if the server speaks plain HTTP, use --server http://{server.Authority}" : "");
        return $"cannot reach the server at {server}: {e.Message} (is `policygrid serve` running? use --server to point elsewhere)";
    }

    /// <summary>
    /// Sends with the token, waiting for the whole answer no longer than --http-timeout; a server that cannot be reached
    /// or does not answer is a <see cref="ServerFailureException"/> with status 0 (exit 3). For answers that are not the
    /// envelope (a graph's diagram, <see cref="GetTextAsync"/>) and those that are (<see cref="ExchangeAsync"/>).
    /// </summary>
    private async Task<HttpResponseMessage> SendRawAsync(HttpRequestMessage request, CancellationToken ct)
    {
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (answerTimeout is { } limit) patience.CancelAfter(limit);
        try
        {
            return await http.SendAsync(request, patience.Token);
        }
        catch (HttpRequestException e)
        {
            throw new ServerFailureException(0, "unreachable", Unreachable(e, Server));
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new ServerFailureException(0, "timeout", answerTimeout is { } waited && patience.IsCancellationRequested
                ? $"the server at {Server} did not answer within {waited.TotalSeconds:0.###} s (--http-timeout)"
                : $"the server at {Server} did not answer in time");
        }
    }

    private static string Truncate(string text) => text.Length <= 200 ? text : text[..200] + "…";
}
