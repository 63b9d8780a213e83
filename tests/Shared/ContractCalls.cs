using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Xunit;

namespace PolicyGrid.TestSupport;

/// <summary>An HTTP answer read the way a client of the contract reads it.</summary>
public sealed record Answer(int Status, JsonNode? Body, IReadOnlyDictionary<string, string> Headers)
{
    public JsonNode? Data => Body?["data"];
    public bool? Success => Body?["success"]?.GetValue<bool>();
    public string? Code => Body?["code"]?.GetValue<string>();
    public string Message => Body?["message"]?.GetValue<string>() ?? "";

    /// <summary><c>data.status</c>: the state a job or a run answers with.</summary>
    public string DataStatus => Data?["status"]?.GetValue<string>() ?? "";

    /// <summary>A response or content header (values joined by commas); null when absent.</summary>
    public string? Header(string name) => Headers.GetValueOrDefault(name);
}

/// <summary>Contract calls on an <see cref="HttpClient"/>, each answering an <see cref="Answer"/>.</summary>
public static class ContractCalls
{
    public static async Task<Answer> Exchange(this HttpClient client, HttpRequestMessage request)
    {
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
            headers[name] = string.Join(",", values);
        // Only a body that says it is JSON is read as JSON: the contract promises that content type for every envelope.
        var isJson = response.Content.Headers.ContentType?.MediaType?.Contains("json", StringComparison.Ordinal) ?? false;
        return new Answer((int)response.StatusCode, isJson && text.Length > 0 ? JsonNode.Parse(text, documentOptions: new System.Text.Json.JsonDocumentOptions { MaxDepth = 256 }) : null, headers);
    }

    /// <summary>Sends <paramref name="body"/> as JSON, or <paramref name="raw"/> text labelled as JSON (for malformed bodies).</summary>
    public static async Task<Answer> Send(this HttpClient client, HttpMethod method, string path, JsonNode? body = null, string? raw = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (raw is not null) request.Content = new StringContent(raw, Encoding.UTF8, "application/json");
        else if (body is not null) request.Content = JsonContent.Create(body);
        return await client.Exchange(request);
    }

    /// <summary>
    /// Sends JSON text under any content type, with a bearer token for this request only (e.g. a job's own result
    /// token; <see cref="GridServer.ClientWith"/> gives a client that always sends one); <paramref name="configure"/> adds headers.
    /// </summary>
    public static async Task<Answer> Call(this HttpClient client, HttpMethod method, string path, string? json = null, string contentType = "application/json",
        string? bearer = null, Action<HttpRequestMessage>? configure = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8);
            request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        }
        if (bearer is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        configure?.Invoke(request);
        return await client.Exchange(request);
    }

    public static Task<Answer> Get(this HttpClient client, string path) => client.Call(HttpMethod.Get, path);

    public static Task<Answer> Post(this HttpClient client, string path, string? json, string contentType = "application/json", string? bearer = null) =>
        client.Call(HttpMethod.Post, path, json, contentType, bearer);

    public static Task<Answer> Put(this HttpClient client, string path, string json, string? ifMatch = null) =>
        client.Call(HttpMethod.Put, path, json, configure: r => IfMatch(r, ifMatch));

    public static Task<Answer> Delete(this HttpClient client, string path, string? json = null, string? ifMatch = null) =>
        client.Call(HttpMethod.Delete, path, json, configure: r => IfMatch(r, ifMatch));

    private static void IfMatch(HttpRequestMessage request, string? etag)
    {
        if (etag is not null) request.Headers.TryAddWithoutValidation("If-Match", etag);
    }
}
