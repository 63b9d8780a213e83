using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Envelope;

/// <summary>
/// A request body read as JSON by us rather than by the framework binder, so that every way a
/// body can be wrong (not JSON, wrong content type, too big, not an object) answers the contract's
/// envelope with a message that names the problem instead of a framework 415 or a bare 400.
/// </summary>
public sealed class JsonBody : IEndpointParameterMetadataProvider
{
    private JsonBody(JsonNode? node) => Node = node;

    /// <summary>The parsed body; null when the body was empty.</summary>
    public JsonNode? Node { get; }

    public bool IsEmpty => Node is null;

    /// <summary>The body as an object; a 400 naming what was sent otherwise.</summary>
    public JsonObject RequireObject(string what = "request body")
    {
        if (Node is null) throw Problems.BadRequest($"{what} is empty; expected a JSON object");
        if (Node is not JsonObject obj) throw Problems.BadRequest($"{what} must be a JSON object, got a JSON {Describe(Node)}");
        return obj;
    }

    /// <summary>The body as an object, or an empty object when no body was sent (query endpoints).</summary>
    public JsonObject ObjectOrEmpty(string what = "request body") => Node is null ? [] : RequireObject(what);

    public static async ValueTask<JsonBody?> BindAsync(HttpContext context, ParameterInfo parameter)
    {
        var limits = context.RequestServices.GetRequiredService<IOptions<ApiLimits>>().Value;
        var bytes = await RequestBytes.ReadAsync(context, limits.MaxBodyBytes, "request body");
        if (WithoutByteOrderMark(bytes).Trim(" \t\r\n"u8).Length == 0) return new JsonBody(null);
        CheckContentType(context.Request.ContentType, bytes);
        return new JsonBody(Parse(bytes, "request body"));
    }

    /// <summary>
    /// Parses JSON bytes that came from a caller: a 400 naming the problem when they are not JSON, nest
    /// deeper than <see cref="MaxDepth"/>, repeat a property, or hold a string that is not valid text.
    /// </summary>
    public static JsonNode? Parse(ReadOnlySpan<byte> bytes, string what)
    {
        bytes = WithoutByteOrderMark(bytes);
        if (bytes.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xFE]) || bytes.StartsWith((ReadOnlySpan<byte>)[0xFE, 0xFF]))
            throw Problems.BadRequest($"{what} starts with a UTF-16 byte-order mark ({bytes[0]:X2} {bytes[1]:X2}): it is UTF-16 text; send the JSON as UTF-8");
        JsonElement element;
        try
        {
            element = JsonElement.Parse(bytes, new JsonDocumentOptions { MaxDepth = MaxDepth, AllowDuplicateProperties = false });
        }
        catch (JsonException e)
        {
            throw Problems.BadRequest($"{what} is not valid JSON: {e.Message}");
        }
        catch (InvalidOperationException)
        {
            // The duplicate check decodes property names and fails on a broken one; find and name it.
            JsonStringCheck.Require(JsonElement.Parse(bytes, new JsonDocumentOptions { MaxDepth = MaxDepth }), what);
            throw;
        }
        JsonStringCheck.Require(element, what);
        // The nodes wrap the parsed element lazily, as JsonNode.Parse does: no second parse.
        return element.ValueKind switch
        {
            JsonValueKind.Object => JsonObject.Create(element),
            JsonValueKind.Array => JsonArray.Create(element),
            JsonValueKind.Null => null,
            _ => JsonValue.Create(element),
        };
    }

    /// <summary>
    /// The body after a UTF-8 byte-order mark (EF BB BF), if it starts with one. RFC 8259 forbids sending one but lets a
    /// parser ignore it, and Windows tools still write it (PowerShell 5's Out-File, Notepad's "UTF-8 with BOM"), so a
    /// file sent with <c>curl --data-binary @file.json</c> is read as the JSON it holds.
    /// </summary>
    private static ReadOnlySpan<byte> WithoutByteOrderMark(ReadOnlySpan<byte> bytes) =>
        bytes.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? bytes[3..] : bytes;

    /// <summary>How deeply a request body may nest (stored documents: DocumentDepth.MaxStored).</summary>
    public const int MaxDepth = PolicyGrid.Core.Documents.DocumentDepth.Max;

    /// <summary>What a refused Content-Type's answer tells the caller to do (curl: <c>-H 'Content-Type: application/json'</c>).</summary>
    internal const string SendAsJson = "send the body as JSON with the header Content-Type: application/json";

    private static void CheckContentType(string? contentType, ReadOnlySpan<byte> body)
    {
        // A missing Content-Type is tolerated (raw HTTP clients); anything that says it is not JSON is refused.
        if (string.IsNullOrEmpty(contentType)) return;
        var parts = contentType.Split(';');
        var mediaType = parts[0].Trim();
        if (!mediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase) && !mediaType.EndsWith("+json", StringComparison.OrdinalIgnoreCase))
            throw Problems.BadRequest($"Content-Type '{mediaType}' is not supported here; {SendAsJson}");
        foreach (var parameter in parts.AsSpan(1))
        {
            var equals = parameter.IndexOf('=');
            if (equals < 0 || !parameter[..equals].Trim().Equals("charset", StringComparison.OrdinalIgnoreCase)) continue;
            CheckCharset(parameter[(equals + 1)..].Trim().Trim('"').Trim(), body);
        }
    }

    // JSON is UTF-8 (RFC 8259) and the body is read as such whatever a charset says. A body of ASCII bytes is the same
    // text in UTF-8 and in every charset built on ASCII (us-ascii, iso-8859-*, windows-125x: clients that label JSON
    // so have always been served). Where the label would change the text, it is refused by name, not misread: UTF-16
    // and UTF-32 (not ASCII-compatible), and any other charset once the body holds a byte past ASCII (Latin-1 letters
    // would be refused as broken UTF-8, or read as other letters).
    private static void CheckCharset(string charset, ReadOnlySpan<byte> body)
    {
        if (charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase) || charset.Equals("utf8", StringComparison.OrdinalIgnoreCase)) return;
        var wide = charset.StartsWith("utf-16", StringComparison.OrdinalIgnoreCase) || charset.StartsWith("utf-32", StringComparison.OrdinalIgnoreCase)
            || charset.StartsWith("utf16", StringComparison.OrdinalIgnoreCase) || charset.StartsWith("utf32", StringComparison.OrdinalIgnoreCase)
            || charset.StartsWith("ucs-", StringComparison.OrdinalIgnoreCase);
        if (!wide && System.Text.Ascii.IsValid(body)) return;
        throw Problems.BadRequest($"Content-Type charset '{Abbreviate(charset)}' is not supported here; JSON is read as UTF-8"
            + (wide ? "" : " and this body holds bytes past ASCII, which that charset would read as other text")
            + ": send the body as UTF-8, with charset=utf-8 or no charset");
    }

    /// <summary>A header value a caller sent, short enough to name in a message.</summary>
    internal static string Abbreviate(string value) => value.Length <= 100 ? value : value[..97] + "...";

    public static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "object",
        JsonArray => "array",
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => "string",
            JsonValueKind.Number => "number",
            JsonValueKind.True or JsonValueKind.False => "boolean",
            _ => "null",
        },
        _ => "value",
    };

    public static void PopulateMetadata(ParameterInfo parameter, EndpointBuilder builder) =>
        builder.Metadata.Add(new AcceptsMetadata(["application/json"], typeof(JsonObject), isOptional: true));
}

/// <summary>
/// Reads a request body up to a limit: 413 too_large past it, whatever the Content-Length claims; 400 when a
/// Content-Encoding says the bytes are compressed.
/// </summary>
public static class RequestBytes
{
    public static async Task<byte[]> ReadAsync(HttpContext context, long limit, string what)
    {
        var request = context.Request;
        RequireUnencoded(request, what);
        if (request.ContentLength is { } declared && declared > limit) throw TooLarge(what, limit);
        // Raise the server's own cap to ours so that our limit (and our envelope) is the one a caller meets.
        var feature = context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>();
        if (feature is { IsReadOnly: false }) feature.MaxRequestBodySize = limit + 1;
        if (request.ContentLength is { } length)
        {
            // The usual case: the size is declared (and the server holds the client to it), so the
            // body is read straight into an array of that size.
            var body = GC.AllocateUninitializedArray<byte>((int)length);
            try
            {
                await request.Body.ReadExactlyAsync(body, context.RequestAborted);
            }
            catch (EndOfStreamException)
            {
                throw Problems.BadRequest($"{what} ended before the {length} bytes its Content-Length declared");
            }
            return body;
        }
        using var buffer = await Runtime.BoundedRead.ReadAsync(request.Body, limit, () => TooLarge(what, limit), context.RequestAborted);
        return buffer.ToArray();
    }

    /// <summary>
    /// A 400 naming the coding when <c>Content-Encoding</c> is anything but <c>identity</c>. Bodies are read as sent, so
    /// gzip-encoded JSON would be answered "not valid JSON", and an encoded bundle stored (or refused) as its encoded
    /// bytes rather than the archive the client meant.
    /// Decoding is not offered: the body limits count the bytes received, and a small compressed body can expand
    /// past any of them, so it would need a second, decoded-size limit on every route for little gain.
    /// </summary>
    public static void RequireUnencoded(HttpRequest request, string what, string advice = "")
    {
        var header = request.Headers.ContentEncoding;
        if (header.Count == 0) return; // most requests: nothing to look at, nothing allocated
        var codings = header
            .SelectMany(value => (value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            .Where(coding => !coding.Equals("identity", StringComparison.OrdinalIgnoreCase))
            .ToList();
        if (codings.Count == 0) return;
        throw Problems.BadRequest($"Content-Encoding '{JsonBody.Abbreviate(string.Join(", ", codings))}' is not supported here; " +
            $"request bodies are read as sent: send the {what} unencoded, without Content-Encoding (or with identity){advice}");
    }

    public static PolicyGridException TooLarge(string what, long limit) =>
        Problems.TooLarge($"{what} is larger than the limit of {limit} bytes");
}
