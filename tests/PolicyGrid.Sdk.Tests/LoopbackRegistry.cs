using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.TestSupport;

namespace PolicyGrid.Sdk.Tests;

/// <summary>
/// A registry on a loopback port (HttpListener) that serves one policy document with an ETag
/// revision and its bundle, and counts what it was asked. Lets the caching and revalidation tests
/// change the document and watch an evaluator notice, independent of the server's own tests.
/// </summary>
public sealed class LoopbackRegistry : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Task _loop;
    private readonly Lock _gate = new();
    private JsonObject _document;
    private byte[] _bundle;
    private int _revision = 1;

    public LoopbackRegistry(JsonObject document, byte[] bundle)
    {
        _bundle = bundle;
        _document = (JsonObject)document.DeepClone();
        _document["code"] = $"bundle://sha256/{Sha}";
        var port = LoopbackPorts.Free();
        Url = new Uri($"http://127.0.0.1:{port}/");
        _listener.Prefixes.Add(Url.ToString());
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    public Uri Url { get; }
    public string Sha => Convert.ToHexStringLower(SHA256.HashData(_bundle));
    private int _policyReads;
    private int _bundleReads;
    public int PolicyReads => Volatile.Read(ref _policyReads);
    public int BundleReads => Volatile.Read(ref _bundleReads);

    /// <summary>When set, every answer is a 503 failure envelope (the store behind the registry is down).</summary>
    public bool Down { get; set; }

    /// <summary>When set, the bundle answered differs from the one the document's code names.</summary>
    public byte[]? Tampered { get; set; }

    /// <summary>When set, policy reads go unanswered until it completes (a hung registry); <see cref="ReadHeld"/> says one came.</summary>
    public TaskCompletionSource? HoldPolicyReads { get; set; }

    public TaskCompletionSource ReadHeld { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Update(Action<JsonObject> change)
    {
        lock (_gate)
        {
            change(_document);
            _revision++;
        }
    }

    public void ReplaceBundle(byte[] bundle) => Update(doc =>
    {
        _bundle = bundle;
        doc["code"] = $"bundle://sha256/{Sha}";
    });

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            if (HoldPolicyReads is { } hold && context.Request.Url!.AbsolutePath.StartsWith("/policy/", StringComparison.Ordinal))
            {
                ReadHeld.TrySetResult();
                _ = hold.Task.ContinueWith(_ =>
                {
                    try { Answer(context); }
                    catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { }
                }, TaskScheduler.Default);
                continue;
            }
            try { Answer(context); }
            catch (HttpListenerException) { }
        }
    }

    private void Answer(HttpListenerContext context)
    {
        var path = context.Request.Url!.AbsolutePath;
        var response = context.Response;
        if (Down)
        {
            Send(response, 503, Envelope(false, null, "backend_unavailable", "store down"));
            return;
        }
        lock (_gate)
        {
            var uri = _document["policy_rule_uri"]!.GetValue<string>();
            if (path == $"/policy/{uri}")
            {
                Interlocked.Increment(ref _policyReads);
                response.Headers["ETag"] = $"\"{_revision}\"";
                Send(response, 200, Envelope(true, _document.DeepClone(), null, null));
            }
            else if (path == $"/bundles/sha256/{Sha}")
            {
                Interlocked.Increment(ref _bundleReads);
                Send(response, 200, Tampered ?? _bundle, "application/zip");
            }
            else
            {
                Send(response, 404, Envelope(false, null, "not_found", $"nothing at {path}"));
            }
        }
    }

    private static byte[] Envelope(bool success, JsonNode? data, string? code, string? message) =>
        Encoding.UTF8.GetBytes((success
            ? new JsonObject { ["success"] = true, ["data"] = data }
            : new JsonObject { ["success"] = false, ["code"] = code, ["message"] = message }).ToJsonString());

    private static void Send(HttpListenerResponse response, int status, byte[] body, string contentType = "application/json")
    {
        response.StatusCode = status;
        response.ContentType = contentType;
        response.ContentLength64 = body.Length;
        response.OutputStream.Write(body);
        response.Close();
    }

    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // Close alone: after Stop, Close removes the listener's endpoint a second time, which on Unix binds the
        // port again to find it, and fails with "Address already in use" once anything else holds the port.
        _listener.Close();
        _loop.Wait(TimeSpan.FromSeconds(5));
    }
}
