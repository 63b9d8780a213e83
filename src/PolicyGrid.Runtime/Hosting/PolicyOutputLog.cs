using System.Text;
using Microsoft.Extensions.Logging;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// Forwards what policies print or log (the worker's stderr, where the host points fd 1 and 2)
/// into the server log, tagged with the policy that wrote it. Reads in fixed chunks and keeps at
/// most <c>maxBytesPerCall</c> per call and <c>maxLineBytes</c> per line, so a policy printing
/// 100 MB costs the server a few kilobytes, not 100 MB.
/// </summary>
/// <remarks>
/// Whose output a line is comes from the pipe itself: before the first print of a policy other than the last one
/// named, the host writes a marker line, a record separator (0x1E), this worker's <see cref="Tag"/> and the
/// policy's URI. The pipe is read on its own thread, so the moment a reply frame arrives says nothing about which
/// call a line belongs to. A marker with another tag is ordinary output.
/// </remarks>
internal sealed class PolicyOutputLog
{
    private const byte RecordSeparator = 0x1E;
    private const int MaxMarkerBytes = 2048;

    private readonly ILogger logger;
    private readonly int maxBytesPerCall;
    private readonly int maxLineBytes;
    private readonly byte[] line;
    private readonly byte[] tagPrefix;
    private readonly byte[] marker = new byte[MaxMarkerBytes];
    private readonly Lock gate = new();
    private int lineLength;
    private bool lineCut;
    private int markerLength = -1; // -1: not inside a marker line
    private bool markerCut;
    private string source = "worker";
    private long keptThisCall;
    private long droppedThisCall;

    public PolicyOutputLog(ILogger logger, int maxBytesPerCall, int maxLineBytes, string tag)
    {
        this.logger = logger;
        this.maxBytesPerCall = maxBytesPerCall;
        this.maxLineBytes = maxLineBytes;
        line = new byte[maxLineBytes];
        Tag = tag;
        tagPrefix = Encoding.ASCII.GetBytes(tag + " ");
    }

    /// <summary>What the host puts after the record separator of its markers (sent to it with the worker's configuration).</summary>
    public string Tag { get; }

    /// <summary>Bytes forwarded to the log since the worker started (for tests and diagnostics).</summary>
    public long ForwardedBytes { get; private set; }

    /// <summary>Bytes read and dropped since the worker started.</summary>
    public long DroppedBytes { get; private set; }

    /// <summary>Opens a fresh per-call budget (a call is about to run).</summary>
    public void BeginCall()
    {
        lock (gate)
        {
            ReportDropped();
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
            if (markerLength >= 0) EndMarker();
            if (lineLength > 0) Flush();
            ReportDropped();
        }
    }

    private void Consume(ReadOnlySpan<byte> chunk)
    {
        while (!chunk.IsEmpty)
        {
            if (markerLength >= 0)
            {
                var end = chunk.IndexOf((byte)'\n');
                var part = end < 0 ? chunk : chunk[..end];
                var take = Math.Min(part.Length, marker.Length - markerLength);
                part[..take].CopyTo(marker.AsSpan(markerLength));
                markerLength += take;
                if (part.Length > take) markerCut = true;
                if (end < 0) return;
                EndMarker();
                chunk = chunk[(end + 1)..];
                continue;
            }
            var stop = chunk.IndexOfAny((byte)'\n', RecordSeparator);
            Append(stop < 0 ? chunk : chunk[..stop]);
            if (stop < 0) return;
            if (chunk[stop] == RecordSeparator)
            {
                // What came before the marker, on the same line, is the previous writer's.
                if (lineLength > 0 || lineCut) Flush();
                markerLength = 0;
                markerCut = false;
            }
            else
            {
                Flush();
            }
            chunk = chunk[(stop + 1)..];
        }
    }

    private void EndMarker()
    {
        var content = marker.AsSpan(0, markerLength);
        markerLength = -1;
        if (!markerCut && content.StartsWith(tagPrefix) && content.Length > tagPrefix.Length)
        {
            source = Encoding.UTF8.GetString(content[tagPrefix.Length..]);
            return;
        }
        // Not the host's: a line of ordinary output that holds a record separator.
        Append([RecordSeparator]);
        Append(content);
        if (markerCut) lineCut = true;
        Flush();
    }

    private void Append(ReadOnlySpan<byte> part)
    {
        var room = maxLineBytes - lineLength;
        if (part.Length > room) lineCut = true;
        var take = Math.Min(room, part.Length);
        part[..take].CopyTo(line.AsSpan(lineLength));
        lineLength += take;
        if (part.Length > take) Drop(part.Length - take);
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
