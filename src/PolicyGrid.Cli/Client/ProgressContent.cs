using System.Net;

namespace PolicyGrid.Cli.Client;

/// <summary>An upload body that reports how many bytes have gone out, for a progress bar on large bundles.</summary>
public sealed class ProgressContent(byte[] bytes, string mediaType, Action<long> onProgress) : HttpContent
{
    private const int Chunk = 64 * 1024;

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
    {
        for (var offset = 0; offset < bytes.Length; offset += Chunk)
        {
            var count = Math.Min(Chunk, bytes.Length - offset);
            await stream.WriteAsync(bytes.AsMemory(offset, count));
            onProgress(offset + count);
        }
    }

    protected override bool TryComputeLength(out long length)
    {
        length = bytes.Length;
        return true;
    }

    public ProgressContent Typed()
    {
        Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(mediaType);
        return this;
    }
}
