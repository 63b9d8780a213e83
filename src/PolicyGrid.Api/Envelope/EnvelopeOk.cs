using System.Buffers;
using System.Reflection;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using HttpJsonOptions = Microsoft.AspNetCore.Http.Json.JsonOptions;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// A 200 with the success envelope, written whole with its Content-Length. <see cref="Microsoft.AspNetCore.Http.HttpResults.Ok{TValue}"/>
/// streams JSON, so every answer went chunked: clients and proxies that want the length up front (HTTP/1.0 ones,
/// buffering load balancers, progress bars) had none, and each answer paid chunk framing and sometimes a second send
/// for the terminating chunk.
/// </summary>
public sealed class EnvelopeOk<T>(Envelope<T> value) : IResult, IEndpointMetadataProvider, IStatusCodeHttpResult, IValueHttpResult, IValueHttpResult<Envelope<T>>
{
    public Envelope<T> Value { get; } = value;
    object? IValueHttpResult.Value => Value;
    public int StatusCode => StatusCodes.Status200OK;
    int? IStatusCodeHttpResult.StatusCode => StatusCode;

    public Task ExecuteAsync(HttpContext httpContext) => JsonAnswer.WriteAsync(httpContext, StatusCode, Value);

#pragma warning disable CA1000 // IEndpointMetadataProvider's member is static by definition
    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Metadata.Add(new ProducesResponseTypeMetadata(StatusCodes.Status200OK, typeof(Envelope<T>), ["application/json"]));
    }
#pragma warning restore CA1000
}

/// <summary>JSON bodies of the API's answers, success and failure alike: serialized first, then sent with their length.</summary>
public static class JsonAnswer
{
    public const string ContentType = "application/json; charset=utf-8";

    public static async Task WriteAsync<T>(HttpContext httpContext, int status, T value)
    {
        ArgumentNullException.ThrowIfNull(httpContext);
        var options = httpContext.RequestServices.GetService<IOptions<HttpJsonOptions>>()?.Value.SerializerOptions ?? ApiJson.Options;
        // Into pooled memory: a query's answer can run to megabytes, which as one fresh array each time would churn
        // the large-object heap.
        using var body = new PooledBuffer();
        using (var writer = new Utf8JsonWriter(body, new JsonWriterOptions { Encoder = options.Encoder, Indented = options.WriteIndented, MaxDepth = options.MaxDepth, SkipValidation = true }))
            JsonSerializer.Serialize(writer, value, options);
        var response = httpContext.Response;
        response.StatusCode = status;
        response.ContentType = ContentType;
        response.ContentLength = body.Written.Length;
        await response.Body.WriteAsync(body.Written, httpContext.RequestAborted);
    }

    /// <summary>A growing buffer of arrays rented from the shared pool, returned when disposed.</summary>
    private sealed class PooledBuffer : IBufferWriter<byte>, IDisposable
    {
        private byte[] array = ArrayPool<byte>.Shared.Rent(4096);
        private int count;

        public ReadOnlyMemory<byte> Written => array.AsMemory(0, count);

        public void Advance(int bytes) => count += bytes;

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return array.AsMemory(count);
        }

        public Span<byte> GetSpan(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return array.AsSpan(count);
        }

        private void Reserve(int sizeHint)
        {
            var needed = count + Math.Max(sizeHint, 1);
            if (needed <= array.Length) return;
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, checked(array.Length * 2)));
            array.AsSpan(0, count).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(array);
            array = larger;
        }

        public void Dispose()
        {
            ArrayPool<byte>.Shared.Return(array);
            array = [];
        }
    }
}
