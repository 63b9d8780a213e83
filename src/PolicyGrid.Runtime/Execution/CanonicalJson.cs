using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// JSON written with object keys sorted, so equal values hash equally whatever order their keys
/// arrived in: used for warm-instance keys and the decision log's input hash.
/// </summary>
public static class CanonicalJson
{
    // One writer per thread, reused: hashing runs on every call, and only the digest leaves this class.
    [ThreadStatic] private static ArrayBufferWriter<byte>? t_buffer;
    [ThreadStatic] private static Utf8JsonWriter? t_writer;

    public static string Sha256(params JsonNode?[] values)
    {
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(256);
        var writer = t_writer ??= new Utf8JsonWriter(buffer);
        buffer.ResetWrittenCount();
        writer.Reset(buffer);
        try
        {
            writer.WriteStartArray();
            foreach (var value in values) Write(writer, value);
            writer.WriteEndArray();
            writer.Flush();
            Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
            SHA256.HashData(buffer.WrittenSpan, digest);
            return Convert.ToHexStringLower(digest);
        }
        finally
        {
            // A huge value must not stay pinned to the thread.
            if (buffer.Capacity > 64 * 1024) (t_buffer, t_writer) = (null, null);
        }
    }

    private static void Write(Utf8JsonWriter writer, JsonNode? node)
    {
        switch (node)
        {
            case null:
                writer.WriteNullValue();
                break;
            case JsonObject obj:
                writer.WriteStartObject();
                WriteSortedProperties(writer, obj);
                writer.WriteEndObject();
                break;
            case JsonArray array:
                writer.WriteStartArray();
                foreach (var item in array) Write(writer, item);
                writer.WriteEndArray();
                break;
            default:
                node.WriteTo(writer);
                break;
        }
    }

    private static void WriteSortedProperties(Utf8JsonWriter writer, JsonObject obj)
    {
        var count = obj.Count;
        if (count == 0) return;
        var properties = ArrayPool<KeyValuePair<string, JsonNode?>>.Shared.Rent(count);
        try
        {
            var sorted = true;
            var i = 0;
            foreach (var property in obj)
            {
                if (i > 0 && string.CompareOrdinal(properties[i - 1].Key, property.Key) > 0) sorted = false;
                properties[i++] = property;
            }
            var span = properties.AsSpan(0, count);
            if (!sorted) span.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
            foreach (var (key, value) in span)
            {
                writer.WritePropertyName(key);
                Write(writer, value);
            }
        }
        finally
        {
            ArrayPool<KeyValuePair<string, JsonNode?>>.Shared.Return(properties, clearArray: true);
        }
    }
}
