using Xunit;
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace PolicyGrid.Kubernetes.Tests;

/// <summary>One request the fake API server received.</summary>
public sealed record RecordedRequest(string Method, string Path, string Query, string Authorization, JsonObject? Body);

/// <summary>
/// A Kubernetes API server on loopback that speaks just enough of the REST API (namespaced
/// create/read/replace/delete/list for core, apps, batch and rbac objects, job status, pod logs)
/// for the real KubernetesClient to talk to it over HTTP. It stores what it is sent, answers the
/// same Status errors a real server does (404 NotFound, 409 AlreadyExists/Conflict), and records
/// every request so tests can assert what a cluster would have seen.
/// </summary>
public sealed class FakeKubernetesApi : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly ConcurrentDictionary<string, JsonObject> objects = new();
    private readonly ConcurrentDictionary<string, string> logs = new();
    private readonly ConcurrentQueue<RecordedRequest> requests = new();
    private readonly ConcurrentQueue<(string Method, string PathPart, int Status)> failures = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource> created = new();
    private long resourceVersion = 100;

    private FakeKubernetesApi(WebApplication app) => this.app = app;

    public string Url { get; private set; } = "";

    public IReadOnlyList<RecordedRequest> Requests => requests.ToArray();

    public static async Task<FakeKubernetesApi> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var fake = new FakeKubernetesApi(app);
        app.Run(fake.HandleAsync);
        await app.StartAsync();
        fake.Url = app.Urls.First();
        return fake;
    }

    public ValueTask DisposeAsync() => app.DisposeAsync();

    /// <summary>The stored object at an API path such as <c>/apis/batch/v1/namespaces/ns/jobs/name</c>, or null.</summary>
    public JsonObject? Get(string path) => objects.TryGetValue(path, out var o) ? o : null;

    public IEnumerable<string> Paths => objects.Keys;

    /// <summary>Completes once an object has been created at <paramref name="path"/> (no polling).</summary>
    public Task WhenCreated(string path) =>
        created.GetOrAdd(path, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task.WaitAsync(TimeSpan.FromSeconds(30));

    /// <summary>Makes the next request whose method matches and whose path contains <paramref name="pathPart"/> fail with <paramref name="status"/>.</summary>
    public void FailNext(string method, string pathPart, int status) => failures.Enqueue((method, pathPart, status));

    /// <summary>What the Job controller would do: sets a condition on a stored Job.</summary>
    public void SetJobCondition(string ns, string name, string type, string reason = "", string message = "")
    {
        var job = Get($"/apis/batch/v1/namespaces/{ns}/jobs/{name}") ?? throw new InvalidOperationException($"no job {ns}/{name}");
        lock (job)
        {
            var status = job["status"] as JsonObject ?? [];
            job["status"] = status;
            status["conditions"] = new JsonArray(new JsonObject
            {
                ["type"] = type, ["status"] = "True", ["reason"] = reason, ["message"] = message,
                ["lastTransitionTime"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ"),
            });
        }
    }

    /// <summary>What the Job controller and kubelet would do: a pod for a job, its runner's exit and its log.</summary>
    public void AddPod(string ns, string name, Dictionary<string, string> labels, string terminatedReason, int exitCode, string log) =>
        AddPod(ns, name, labels, new JsonObject { ["terminated"] = new JsonObject { ["reason"] = terminatedReason, ["exitCode"] = exitCode } }, log);

    /// <summary>
    /// A pod in the runner container's <paramref name="state"/> (<c>{"waiting": {...}}</c> or <c>{"terminated": {...}}</c>),
    /// with the pod's own <paramref name="reason"/> and <paramref name="message"/> (an eviction's) and, unless null, a log.
    /// </summary>
    public void AddPod(string ns, string name, Dictionary<string, string> labels, JsonObject state, string? log, string reason = "", string message = "")
    {
        var labelObject = new JsonObject();
        foreach (var (k, v) in labels) labelObject[k] = v;
        var status = new JsonObject
        {
            ["containerStatuses"] = new JsonArray(new JsonObject
            {
                ["name"] = "runner", ["image"] = "x", ["imageID"] = "", ["ready"] = false, ["restartCount"] = 0, ["state"] = state,
            }),
        };
        if (reason.Length > 0) status["reason"] = reason;
        if (message.Length > 0) status["message"] = message;
        objects[$"/api/v1/namespaces/{ns}/pods/{name}"] = new JsonObject
        {
            ["apiVersion"] = "v1", ["kind"] = "Pod",
            ["metadata"] = new JsonObject { ["name"] = name, ["namespace"] = ns, ["labels"] = labelObject },
            ["status"] = status,
        };
        if (log is not null) logs[$"/api/v1/namespaces/{ns}/pods/{name}/log"] = log;
    }

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        JsonObject? body = null;
        if (request.ContentLength is > 0 || request.Headers.TransferEncoding.Count > 0)
        {
            using var reader = new StreamReader(request.Body, Encoding.UTF8);
            var text = await reader.ReadToEndAsync();
            if (text.Length > 0) body = JsonNode.Parse(text) as JsonObject;
        }
        var path = request.Path.Value!.TrimEnd('/');
        requests.Enqueue(new RecordedRequest(request.Method, path, request.QueryString.Value ?? "", request.Headers.Authorization.ToString(), body));

        if (failures.TryPeek(out var failure) && failure.Method == request.Method && path.Contains(failure.PathPart, StringComparison.Ordinal))
        {
            failures.TryDequeue(out _);
            await StatusAsync(context, failure.Status, "InternalError", $"injected failure {failure.Status}");
            return;
        }

        // /api/v1/namespaces/{ns}/{resource}[/{name}[/{sub}]] or /apis/{group}/{version}/namespaces/...
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var nsIndex = Array.IndexOf(parts, "namespaces");
        if (nsIndex < 0 || parts.Length < nsIndex + 3) { await StatusAsync(context, 404, "NotFound", $"unknown path {path}"); return; }
        var collection = "/" + string.Join('/', parts[..(nsIndex + 3)]);
        var name = parts.Length > nsIndex + 3 ? parts[nsIndex + 3] : null;
        var sub = parts.Length > nsIndex + 4 ? parts[nsIndex + 4] : null;
        var ns = parts[nsIndex + 1];

        switch (request.Method, name, sub)
        {
            case ("POST", null, null):
                {
                    var objectName = body?["metadata"]?["name"]?.GetValue<string>() ?? "";
                    var key = $"{collection}/{objectName}";
                    var meta = (JsonObject)body!["metadata"]!;
                    meta["namespace"] = ns;
                    meta["resourceVersion"] = Interlocked.Increment(ref resourceVersion).ToString();
                    meta["uid"] = Guid.NewGuid().ToString();
                    if (!objects.TryAdd(key, body))
                    {
                        await StatusAsync(context, 409, "AlreadyExists", $"{parts[nsIndex + 2]} \"{objectName}\" already exists");
                        return;
                    }
                    await ObjectAsync(context, 201, body);
                    created.GetOrAdd(key, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                    return;
                }
            case ("GET", null, null):
                {
                    var selector = request.Query["labelSelector"].ToString();
                    var items = new JsonArray();
                    foreach (var (key, value) in objects)
                        if (key.StartsWith(collection + "/", StringComparison.Ordinal) && Selects(selector, value))
                            items.Add(value.DeepClone());
                    await ObjectAsync(context, 200, new JsonObject { ["apiVersion"] = "v1", ["kind"] = "List", ["metadata"] = new JsonObject(), ["items"] = items });
                    return;
                }
            case ("GET", not null, "log"):
                if (logs.TryGetValue(path, out var log))
                {
                    context.Response.ContentType = "text/plain";
                    await context.Response.WriteAsync(log);
                }
                else await StatusAsync(context, 404, "NotFound", $"pod \"{name}\" not found");
                return;
            case ("GET", not null, null or "status"):
                if (objects.TryGetValue($"{collection}/{name}", out var found))
                {
                    JsonNode copy;
                    lock (found) copy = found.DeepClone();
                    await ObjectAsync(context, 200, copy);
                }
                else await StatusAsync(context, 404, "NotFound", $"{parts[nsIndex + 2]} \"{name}\" not found");
                return;
            case ("PUT", not null, null):
                {
                    var key = $"{collection}/{name}";
                    if (!objects.TryGetValue(key, out var existing)) { await StatusAsync(context, 404, "NotFound", $"\"{name}\" not found"); return; }
                    var given = body?["metadata"]?["resourceVersion"]?.GetValue<string>();
                    if (given != existing["metadata"]!["resourceVersion"]!.GetValue<string>())
                    {
                        await StatusAsync(context, 409, "Conflict", "the object has been modified; please apply your changes to the latest version");
                        return;
                    }
                    body!["metadata"]!["resourceVersion"] = Interlocked.Increment(ref resourceVersion).ToString();
                    objects[key] = body;
                    await ObjectAsync(context, 200, body);
                    return;
                }
            case ("DELETE", not null, null):
                // Like a real server for objects without finalizers: the answer is the object as it was deleted.
                if (objects.TryRemove($"{collection}/{name}", out var deleted))
                    await ObjectAsync(context, 200, deleted);
                else await StatusAsync(context, 404, "NotFound", $"{parts[nsIndex + 2]} \"{name}\" not found");
                return;
            default:
                await StatusAsync(context, 405, "MethodNotAllowed", $"{request.Method} {path} is not supported by the fake");
                return;
        }
    }

    private static bool Selects(string selector, JsonObject obj)
    {
        if (selector.Length == 0) return true;
        var labels = obj["metadata"]?["labels"] as JsonObject;
        foreach (var term in selector.Split(','))
        {
            var kv = term.Split('=', 2);
            if (labels?[kv[0]]?.GetValue<string>() != kv[1]) return false;
        }
        return true;
    }

    private static Task ObjectAsync(HttpContext context, int status, JsonNode body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(body.ToJsonString());
    }

    private static Task StatusAsync(HttpContext context, int code, string reason, string message) =>
        ObjectAsync(context, code, new JsonObject
        {
            ["kind"] = "Status", ["apiVersion"] = "v1", ["metadata"] = new JsonObject(),
            ["status"] = "Failure", ["message"] = message, ["reason"] = reason, ["code"] = code,
        });
}
