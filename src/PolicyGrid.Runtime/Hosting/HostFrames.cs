using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>The worker protocol's framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.</summary>
internal static class HostFrames
{
    // One scratch writer per thread: a frame is written there and copied out at its exact size, so a
    // call allocates only its frame (it stays queued until its worker answers, so it cannot be pooled).
    [ThreadStatic] private static ArrayBufferWriter<byte>? t_buffer;
    [ThreadStatic] private static Utf8JsonWriter? t_writer;

    /// <summary>Serializes one frame: the length prefix followed by the JSON <paramref name="body"/> writes.</summary>
    public static ReadOnlyMemory<byte> Encode(Action<Utf8JsonWriter> body)
    {
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(1024);
        var writer = t_writer ??= new Utf8JsonWriter(buffer);
        buffer.ResetWrittenCount();
        writer.Reset(buffer);
        try
        {
            buffer.Advance(4); // room for the length, patched below once the body is written
            body(writer);
            writer.Flush();
            var frame = buffer.WrittenSpan.ToArray();
            BinaryPrimitives.WriteInt32BigEndian(frame, frame.Length - 4);
            return frame;
        }
        finally
        {
            // A large frame's buffer must not stay pinned to the thread.
            if (buffer.Capacity > 64 * 1024) (t_buffer, t_writer) = (null, null);
        }
    }

    /// <summary>A frame of the given bytes as they are.</summary>
    public static byte[] Raw(ReadOnlySpan<byte> payload)
    {
        var frame = new byte[4 + payload.Length];
        BinaryPrimitives.WriteInt32BigEndian(frame, payload.Length);
        payload.CopyTo(frame.AsSpan(4));
        return frame;
    }

    public static async Task WriteAsync(Stream stream, Action<Utf8JsonWriter> body, CancellationToken ct)
    {
        await stream.WriteAsync(Encode(body), ct);
        await stream.FlushAsync(ct);
    }

    /// <summary>Reads one frame, blocking; <see cref="EndOfStreamException"/> when the worker is gone.</summary>
    public static JsonObject Read(Stream stream, int maxBytes)
    {
        Span<byte> header = stackalloc byte[4];
        stream.ReadExactly(header);
        var length = BinaryPrimitives.ReadInt32BigEndian(header);
        if (length < 0 || length > maxBytes)
            throw new InvalidDataException($"worker sent a {length}-byte frame, over the {maxBytes}-byte limit");
        var payload = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            stream.ReadExactly(payload.AsSpan(0, length));
            // Input is at most DocumentDepth.Max deep, but a policy may answer deeper: up to what answers can carry.
            return JsonNode.Parse(payload.AsSpan(0, length), documentOptions: new JsonDocumentOptions { MaxDepth = Core.Documents.DocumentDepth.MaxWritten }) as JsonObject
                ?? throw new InvalidDataException("worker sent a frame that is not a JSON object");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(payload);
        }
    }
}
