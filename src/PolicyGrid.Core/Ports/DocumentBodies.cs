using System.Buffers;
using System.Text.Json;

namespace PolicyGrid.Core.Ports;

/// <summary>Receives one document body written by <see cref="DocumentBodies.WriteEach{T}"/>: its id and its UTF-8 JSON.</summary>
public delegate void DocumentBodyHandler(string id, ReadOnlySpan<byte> json);

/// <summary>What every <see cref="IDocumentBatchStore"/> does with a batch's writer, in one place.</summary>
public static class DocumentBodies
{
    /// <summary>
    /// Writes each item's body with <paramref name="write"/> into one reused buffer and hands it to <paramref name="take"/>;
    /// throws <see cref="ArgumentException"/> naming the item when what was written is not exactly one JSON object.
    /// </summary>
    public static void WriteEach<T>(string collection, IReadOnlyList<T> items, Func<T, string> id, Action<Utf8JsonWriter, T> write, DocumentBodyHandler take)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(write);
        ArgumentNullException.ThrowIfNull(take);
        var buffer = new ArrayBufferWriter<byte>(512);
        using var writer = new Utf8JsonWriter(buffer);
        foreach (var item in items)
        {
            buffer.ResetWrittenCount();
            writer.Reset(buffer);
            write(writer, item);
            writer.Flush();
            if (buffer.WrittenCount == 0 || buffer.WrittenSpan[0] != (byte)'{' || writer.CurrentDepth != 0)
                throw new ArgumentException($"the body written for '{id(item)}' in {collection} is not one JSON object", nameof(write));
            take(id(item), buffer.WrittenSpan);
        }
    }
}
