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
            return Parse(payload.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(payload);
        }
    }

    /// <summary>
    /// One reply frame. What a policy answers (its result, context or state) can make a frame that is valid JSON and yet
    /// none this server can take, and the host's own keys cannot: it nests deeper than answers are written
    /// (<see cref="Core.Documents.DocumentDepth.MaxWritten"/>), or a dict holds keys Python writes as one JSON key
    /// (1 and "1", True and "true", None and "null"). Such a frame was read as a broken protocol (the worker replaced)
    /// or taken as it was (answered to callers with the key twice, a 500 where the server read its members). The frame
    /// was read whole, so the worker is still in step: the call answers a policy error saying what is wrong, and the
    /// worker serves on.
    /// </summary>
    internal static JsonObject Parse(ReadOnlySpan<byte> frame)
    {
        var options = new JsonDocumentOptions { MaxDepth = Core.Documents.DocumentDepth.MaxWritten, AllowDuplicateProperties = false };
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(frame, documentOptions: options);
        }
        catch (JsonException strict)
        {
            // Read again as any JSON (Python's encoder stops near 1000 levels): a frame that still fails is broken.
            JsonObject? lenient;
            try { lenient = JsonNode.Parse(frame, documentOptions: new JsonDocumentOptions { MaxDepth = LenientDepth }) as JsonObject; }
            catch (JsonException) { throw strict; }
            if (lenient is null) throw;
            var tooDeep = TooDeep(frame, options);
            var reply = new JsonObject
            {
                ["ok"] = false,
                ["kind"] = "error",
                ["type"] = "ValueError",
                ["message"] = tooDeep
                    ? $"the policy answered JSON nested too deep: an answer carries at most {Core.Documents.DocumentDepth.MaxWritten} levels of objects and arrays, the 3 of the worker's reply around it included"
                    : CollidingKeys(strict),
                ["traceback"] = "",
            };
            if (lenient["retiring"] is { } retiring) reply["retiring"] = retiring.DeepClone();
            return reply;
        }
        return node as JsonObject ?? throw new InvalidDataException("worker sent a frame that is not a JSON object");
    }

    /// <summary>
    /// Why an answer read with <c>AllowDuplicateProperties = false</c> has no JSON form, around the parser's words (which
    /// name the key). The SDK's in-process evaluator says the same, so a policy answers alike there and here.
    /// </summary>
    internal static string CollidingKeys(JsonException strict) =>
        $"the policy answered a dict with a key twice once written as JSON ({strict.Message.TrimEnd('.')}): Python writes " +
        "the keys 1, True and None as \"1\", \"true\" and \"null\", so a dict holding both 1 and \"1\" has no JSON form; use string keys";

    private const int LenientDepth = 4096;

    /// <summary>
    /// Whether JSON that <paramref name="strict"/> (no key twice) refused is refused for its depth, not for a repeated key:
    /// it still fails with repeated keys allowed. The servers and the SDK's in-process evaluator tell the two apart alike.
    /// </summary>
    internal static bool TooDeep(ReadOnlySpan<byte> utf8, JsonDocumentOptions strict)
    {
        try
        {
            using var _ = JsonDocument.Parse(utf8.ToArray(), strict with { AllowDuplicateProperties = true });
            return false;
        }
        catch (JsonException)
        {
            return true;
        }
    }
}
