using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>The worker protocol's framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.</summary>
internal static class HostFrames
{
    /// <summary>Serializes one frame: the length prefix followed by the JSON <paramref name="body"/> writes.</summary>
    public static ReadOnlyMemory<byte> Encode(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        buffer.Advance(4); // room for the length, patched below once the body is written
        using (var writer = new Utf8JsonWriter(buffer))
        {
            body(writer);
        }
        var frame = MemoryMarshal.AsMemory(buffer.WrittenMemory);
        BinaryPrimitives.WriteInt32BigEndian(frame.Span, frame.Length - 4);
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
            return JsonNode.Parse(payload.AsSpan(0, length)) as JsonObject
                ?? throw new InvalidDataException("worker sent a frame that is not a JSON object");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(payload);
        }
    }
}
