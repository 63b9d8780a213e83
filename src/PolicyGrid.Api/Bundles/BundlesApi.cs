using System.ComponentModel;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Bundles;

namespace PolicyGrid.Api.Bundles;

/// <summary>Content-addressed policy bundles: upload an archive, get back the address a PolicyRule's <c>code</c> names.</summary>
public static class BundlesApi
{
    public const string DownloadPrefix = "/bundles/sha256/";

    /// <summary>The name of <c>GET /bundles/sha256/{sha256}</c>.</summary>
    public const string DownloadEndpoint = "DownloadBundle";

    /// <summary>What POST /bundles answers: both forms of the address, the hash and the size.</summary>
    public sealed record UploadedBundle(string Code, string Sha256, long Size, string Url);

    public static IEndpointRouteBuilder MapBundlesApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/bundles").WithTags("Bundles").AnswersErrors(400, 401, 403, 404, 413);
        api.MapPost("", Upload).WithName("UploadBundle").WithSummary("Upload a policy bundle archive")
            .WithDescription($"{Accepted}. Answers {{code, sha256, size, url}}.")
            // */* as well: the archive's magic bytes say what it is, whatever Content-Type a client puts on it.
            .Accepts<byte[]>("application/zip", "application/x-xz", "application/gzip", "application/octet-stream", "multipart/form-data", "*/*");
        api.MapGet("/sha256/{sha256}", Download).WithName(DownloadEndpoint).WithSummary("Download a bundle archive by its sha256")
            .Produces<byte[]>(200, "application/zip", "application/x-xz", "application/gzip");
        return app;
    }

    public static async Task<EnvelopeOk<UploadedBundle>> Upload([AsParameters] BundleServices services, CancellationToken ct)
    {
        var http = services.Http;
        var limit = services.Limits.Value.MaxBundleBytes;
        var archive = await ReadArchiveAsync(http, limit);
        if (archive.Length == 0) throw Problems.BadRequest($"the bundle is empty; {Accepted}");
        if (BundleArchive.Detect(archive) == BundleArchiveKind.Unknown)
            throw Problems.BadRequest($"the bundle is not a readable archive: it starts with neither PK (zip), 1F 8B (gzip) nor FD 37 7A 58 5A (xz); {Accepted}");
        // The runtime's own reader: unreadable or unsafe archives (absolute paths, .., links out, bombs) never get stored.
        BundleArchive.Validate(archive);
        var stored = await services.Bundles.PutAsync(archive, ct);
        var url = $"{http.Request.Scheme}://{http.Request.Host}{http.Request.PathBase}{DownloadPrefix}{stored.Sha256}";
        return Envelope.Answer.Ok(new UploadedBundle(stored.Code, stored.Sha256, stored.Size, url));
    }

    public static async Task<Results<FileContentHttpResult, Failure>> Download([Description("64 lowercase hex digits")] string sha256, [AsParameters] BundleServices services, CancellationToken ct)
    {
        if (!CodePin.IsSha256(sha256))
            return Failure.From(Problems.BadRequest($"'{sha256}' is not a sha256: expected 64 lowercase hex digits"));
        var bytes = await services.Bundles.GetAsync(sha256, ct);
        if (bytes is null) return Failure.From(Problems.NotFound($"no bundle {sha256} is stored"));
        // Content-addressed, so a download never changes: let every cache keep it.
        services.Http.Response.Headers.CacheControl = "public, max-age=31536000, immutable";
        return TypedResults.File(bytes, BundleMediaTypes.MediaType(bytes), $"{sha256}{BundleMediaTypes.Extension(bytes)}",
            entityTag: new Microsoft.Net.Http.Headers.EntityTagHeaderValue($"\"{sha256}\""));
    }

    private static async Task<byte[]> ReadArchiveAsync(HttpContext http, long limit)
    {
        var request = http.Request;
        // Checked here for both forms: a multipart body is read by the form reader, not RequestBytes.
        RequestBytes.RequireUnencoded(request, "bundle", "; a .tar.gz or .tar.xz archive is sent as it is, its compression is part of the archive");
        var mediaType = Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(request.ContentType, out var media) ? media.MediaType.Value ?? "" : "";
        // Only multipart/form-data is a form here: curl --data-binary labels a raw archive x-www-form-urlencoded.
        if (!mediaType.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase)) return await RequestBytes.ReadAsync(http, limit, "bundle");
        if (!mediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
            throw Problems.BadRequest($"Content-Type '{mediaType}' is not read as an upload form; {Accepted}");
        if (request.ContentLength is { } declared && declared > limit) throw RequestBytes.TooLarge("bundle", limit);
        var feature = http.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>();
        if (feature is { IsReadOnly: false }) feature.MaxRequestBodySize = limit + 64 * 1024;
        IFormCollection form;
        try
        {
            form = await request.ReadFormAsync(new Microsoft.AspNetCore.Http.Features.FormOptions { MultipartBodyLengthLimit = limit }, http.RequestAborted);
        }
        catch (InvalidDataException e)
        {
            // Only the body length limit is ours; the reader's other limits (boundary, header, line length) mean a malformed body.
            throw e.Message.Contains("body length limit", StringComparison.OrdinalIgnoreCase) ? RequestBytes.TooLarge("bundle", limit) : Problems.BadRequest($"the multipart body could not be read: {e.Message}");
        }
        catch (IOException e) when (e is not BadHttpRequestException && !http.RequestAborted.IsCancellationRequested)
        {
            // The multipart reader says "unexpected end of stream" when the body ends before its closing boundary.
            throw Problems.BadRequest($"the multipart body could not be read: it ended before a complete part and the closing boundary (--{Boundary(request.ContentType)}--) were found");
        }
        var files = form.Files.GetFiles("file");
        if (files.Count == 0) throw Problems.BadRequest($"the multipart body has no 'file' part; {Accepted}");
        if (files.Count > 1) throw Problems.BadRequest($"the multipart body has {files.Count} 'file' parts; one archive per upload: send each bundle in its own POST /bundles");
        var file = files[0];
        if (file.Length > limit) throw RequestBytes.TooLarge("bundle", limit);
        using var buffer = new MemoryStream((int)file.Length);
        await file.CopyToAsync(buffer, http.RequestAborted);
        return buffer.ToArray();
    }

    /// <summary>What an upload may be, for the route's description and every 400 about the shape of one.</summary>
    private const string Accepted = "send a .zip, .tar.gz or .tar.xz archive as the raw body (under any Content-Type but multipart, " +
        "e.g. application/zip or application/octet-stream), or as the one part named 'file' of a multipart/form-data body";

    private static string Boundary(string? contentType) =>
        Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(contentType, out var media) ? Microsoft.Net.Http.Headers.HeaderUtilities.RemoveQuotes(media.Boundary).ToString() : "";
}

public sealed record BundleServices(HttpContext Http, IBundleStore Bundles, IOptions<ApiLimits> Limits);
