using System.Collections.Concurrent;
using System.Net;

namespace PolicyGrid.TestSupport;

/// <summary>
/// Serves fixed bytes (or a redirect) on 127.0.0.1 with HttpListener, counting requests. Serving other bytes at a path
/// replaces what it answers there: a bundle URL whose content changes under the registry.
/// </summary>
internal sealed class LoopbackBundleServer : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly ConcurrentDictionary<string, Func<HttpListenerResponse, Task>> _routes = new(StringComparer.Ordinal);
    private int _requests;

    public LoopbackBundleServer()
    {
        Port = LoopbackPorts.Free();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _ = Task.Run(ServeAsync);
    }

    public int Port { get; }
    public int Requests => Volatile.Read(ref _requests);

    public string Url(string path) => $"http://127.0.0.1:{Port}{path}";

    public void Serve(string path, byte[] body) => _routes[path] = async r =>
    {
        r.StatusCode = 200;
        r.ContentLength64 = body.Length;
        await r.OutputStream.WriteAsync(body);
    };

    public void Redirect(string path, string location) => _routes[path] = r =>
    {
        r.StatusCode = 302;
        r.RedirectLocation = location;
        return Task.CompletedTask;
    };

    /// <summary>Answers 200 with a declared length, sends the first <paramref name="sent"/> bytes of it, then sends nothing more until disposed.</summary>
    public void Stall(string path, int declared, int sent) => _routes[path] = async r =>
    {
        r.StatusCode = 200;
        r.ContentLength64 = declared;
        await r.OutputStream.WriteAsync(new byte[sent]);
        await r.OutputStream.FlushAsync();
        try { await Task.Delay(Timeout.Infinite, _stopped.Token); }
        catch (OperationCanceledException) { }
    };

    private readonly CancellationTokenSource _stopped = new();

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            Interlocked.Increment(ref _requests);
            try
            {
                if (_routes.TryGetValue(context.Request.Url!.AbsolutePath, out var route)) await route(context.Response);
                else context.Response.StatusCode = 404;
            }
            finally { context.Response.Close(); }
        }
    }

    public void Dispose()
    {
        _stopped.Cancel();
        _listener.Close();
    }
}
