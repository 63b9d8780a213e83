using System.Text;
using Microsoft.Extensions.Logging;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// Forwards what policies print or log (the worker's stderr, where the host points fd 1 and 2)
/// into the server log, tagged with the policy running at the time. Reads in fixed chunks and
/// keeps at most <c>maxBytesPerCall</c> per call and <c>maxLineBytes</c> per line, so a policy
/// printing 100 MB costs the server a few kilobytes, not 100 MB.
/// </summary>
internal sealed class PolicyOutputLog
{
    private readonly ILogger logger;
    private readonly int maxBytesPerCall;
    private readonly int maxLineBytes;
    private readonly byte[] line;
    private readonly Lock gate = new();
    private int lineLength;
    private bool lineCut;
    private string source = "worker";
    private long keptThisCall;
    private long droppedThisCall;

    public PolicyOutputLog(ILogger logger, int maxBytesPerCall, int maxLineBytes)
    {
        this.logger = logger;
        this.maxBytesPerCall = maxBytesPerCall;
        this.maxLineBytes = maxLineBytes;
        line = new byte[maxLineBytes];
    }

    /// <summary>Bytes forwarded to the log since the worker started (for tests and diagnostics).</summary>
    public long ForwardedBytes { get; private set; }

    /// <summary>Bytes read and dropped since the worker started.</summary>
    public long DroppedBytes { get; private set; }

    /// <summary>Attributes output from now on to <paramref name="policy"/> and opens a fresh per-call budget.</summary>
    public void BeginCall(string policy)
    {
        lock (gate)
        {
            ReportDropped();
            source = policy;
            keptThisCall = 0;
        }
    }

    /// <summary>Reads the stream to its end; returns when the worker exits.</summary>
    public async Task PumpAsync(Stream stream)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer)) > 0)
                lock (gate) Consume(buffer.AsSpan(0, read));
        }
        catch (IOException) { }
        catch (ObjectDisposedException) { }
        lock (gate)
        {
            if (lineLength > 0) Flush();
            ReportDropped();
        }
    }

    private void Consume(ReadOnlySpan<byte> chunk)
    {
        while (!chunk.IsEmpty)
        {
            var newline = chunk.IndexOf((byte)'\n');
            var part = newline < 0 ? chunk : chunk[..newline];
            var room = maxLineBytes - lineLength;
            if (part.Length > room) lineCut = true;
            var take = Math.Min(room, part.Length);
            part[..take].CopyTo(line.AsSpan(lineLength));
            lineLength += take;
            if (part.Length > take) Drop(part.Length - take);
            if (newline < 0) return;
            Flush();
            chunk = chunk[(newline + 1)..];
        }
    }

    private void Flush()
    {
        var length = lineLength;
        lineLength = 0;
        var cut = lineCut;
        lineCut = false;
        if (keptThisCall + length > maxBytesPerCall) { Drop(length); return; }
        keptThisCall += length;
        ForwardedBytes += length;
        var text = Encoding.UTF8.GetString(line, 0, length);
        logger.LogInformation(PythonWorkerPool.PolicyOutput, "policy {Policy} output: {Line}{Cut}", source, text, cut ? " [line cut]" : "");
    }

    private void Drop(long bytes)
    {
        droppedThisCall += bytes;
        DroppedBytes += bytes;
    }

    private void ReportDropped()
    {
        if (droppedThisCall == 0) return;
        logger.LogWarning(PythonWorkerPool.PolicyOutput, "policy {Policy} output: {Dropped} more bytes were dropped (limit {Limit} bytes per call)", source, droppedThisCall, maxBytesPerCall);
        droppedThisCall = 0;
    }
}
