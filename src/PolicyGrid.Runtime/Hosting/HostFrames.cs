using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>The worker protocol's framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.</summary>
internal static class HostFrames
{
    public static async Task WriteAsync(Stream stream, Action<Utf8JsonWriter> body, CancellationToken ct)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        buffer.Advance(4); // room for the length, patched below once the body is written
        using (var writer = new Utf8JsonWriter(buffer))
        {
            body(writer);
        }
        var frame = MemoryMarshal.AsMemory(buffer.WrittenMemory);
        BinaryPrimitives.WriteInt32BigEndian(frame.Span, frame.Length - 4);
        await stream.WriteAsync(frame, ct);
        await stream.FlushAsync(ct);
    }

    /// <summary>Reads one frame; <see cref="EndOfStreamException"/> when the worker is gone.</summary>
    public static async Task<JsonObject> ReadAsync(Stream stream, int maxBytes, CancellationToken ct)
    {
        var header = new byte[4];
        await stream.ReadExactlyAsync(header, ct);
        var length = BinaryPrimitives.ReadInt32BigEndian(header);
        if (length < 0 || length > maxBytes)
            throw new InvalidDataException($"worker sent a {length}-byte frame, over the {maxBytes}-byte limit");
        var payload = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            await stream.ReadExactlyAsync(payload.AsMemory(0, length), ct);
            return JsonNode.Parse(payload.AsSpan(0, length)) as JsonObject
                ?? throw new InvalidDataException("worker sent a frame that is not a JSON object");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(payload);
        }
    }
}
