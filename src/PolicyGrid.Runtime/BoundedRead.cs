using System.Buffers;

namespace PolicyGrid.Runtime;

/// <summary>Reads a stream whose length is not to be trusted (a request body, a download, a node's answer) to its end, never holding more than a limit.</summary>
public static class BoundedRead
{
    /// <summary>
    /// All of <paramref name="stream"/>, in memory; <paramref name="tooLarge"/> is thrown as soon as more than
    /// <paramref name="maxBytes"/> came out of it, whatever the sender declared.
    /// </summary>
    public static async Task<MemoryStream> ReadAsync(Stream stream, long maxBytes, Func<Exception> tooLarge, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(tooLarge);
        var buffer = new MemoryStream();
        var chunk = ArrayPool<byte>.Shared.Rent(81920);
        try
        {
            int read;
            while ((read = await stream.ReadAsync(chunk, ct)) > 0)
            {
                if (buffer.Length + read > maxBytes) throw tooLarge();
                buffer.Write(chunk, 0, read);
            }
            return buffer;
        }
        catch
        {
            await buffer.DisposeAsync();
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }
}
