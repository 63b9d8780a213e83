using System.Net.Mime;
using System.Text;
using CloudNative.CloudEvents;
using CloudNative.CloudEvents.SystemTextJson;
using Microsoft.AspNetCore.Http;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Events;

/// <summary>
/// Reads a CloudEvent from an HTTP request in either mode of the CloudEvents HTTP binding:
/// structured (<c>Content-Type: application/cloudevents+json</c>, the whole event as JSON — what the
/// Dapr sidecar delivers to subscribers) or binary (attributes in <c>ce-*</c> headers, the body is the data).
/// A request that is neither, or that lacks a required attribute, is a 400 naming what is missing.
/// </summary>
public static class CloudEventReader
{
    public const string StructuredMediaType = "application/cloudevents+json";
    private const string HeaderPrefix = "ce-";

    public static readonly JsonEventFormatter Formatter = new();

    public static CloudEvent Read(byte[] body, string? contentType, IHeaderDictionary headers)
    {
        var mediaType = MediaTypeOf(contentType);
        if (mediaType is not null && mediaType.Equals(StructuredMediaType, StringComparison.OrdinalIgnoreCase))
            return Structured(body, contentType!);
        if (headers.ContainsKey(HeaderPrefix + "specversion"))
            return Binary(body, contentType, headers);
        throw Problems.BadRequest(
            $"request is not a CloudEvent: send Content-Type {StructuredMediaType} with the event as JSON (structured mode), " +
            "or ce-specversion, ce-id, ce-source and ce-type headers with the data as the body (binary mode)");
    }

    private static CloudEvent Structured(byte[] body, string contentType)
    {
        if (body.Length == 0) throw Problems.BadRequest("structured CloudEvent body is empty");
        try
        {
            var cloudEvent = Formatter.DecodeStructuredModeMessage(body, new ContentType(contentType), null);
            return Validated(cloudEvent);
        }
        catch (FormatException) when (HasBadBase64Data(body))
        {
            // The formatter's own message ("One of the identified items was in an invalid format.") names nothing.
            throw Problems.BadRequest("structured CloudEvent is invalid: data_base64 is not valid base64");
        }
        catch (Exception e) when (e is ArgumentException or FormatException or System.Text.Json.JsonException or InvalidOperationException)
        {
            throw Problems.BadRequest($"structured CloudEvent is invalid: {e.Message}");
        }
    }

    private static bool HasBadBase64Data(byte[] body)
    {
        try
        {
            using var document = System.Text.Json.JsonDocument.Parse(body);
            return document.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object
                && document.RootElement.TryGetProperty("data_base64", out var data)
                && data.ValueKind == System.Text.Json.JsonValueKind.String
                && !data.TryGetBytesFromBase64(out _);
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
    }

    private static CloudEvent Binary(byte[] body, string? contentType, IHeaderDictionary headers)
    {
        var versionId = headers[HeaderPrefix + "specversion"].ToString();
        var version = CloudEventsSpecVersion.FromVersionId(versionId)
            ?? throw Problems.BadRequest($"ce-specversion '{versionId}' is not a CloudEvents version this server reads (1.0)");
        var cloudEvent = new CloudEvent(version);
        try
        {
            foreach (var (name, values) in headers)
            {
                if (!name.StartsWith(HeaderPrefix, StringComparison.OrdinalIgnoreCase)) continue;
                var attribute = name[HeaderPrefix.Length..].ToLowerInvariant();
                if (attribute == "specversion") continue;
                // Header values are percent-encoded by the HTTP binding for non-ASCII characters.
                cloudEvent.SetAttributeFromString(attribute, Uri.UnescapeDataString(values.ToString()));
            }
            if (!string.IsNullOrEmpty(contentType)) cloudEvent.DataContentType = contentType;
            if (body.Length > 0) Formatter.DecodeBinaryModeEventData(body, cloudEvent);
            return Validated(cloudEvent);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or System.Text.Json.JsonException or InvalidOperationException)
        {
            throw Problems.BadRequest($"binary-mode CloudEvent is invalid: {e.Message}");
        }
    }

    private static CloudEvent Validated(CloudEvent cloudEvent)
    {
        var missing = new[] { ("id", cloudEvent.Id is null), ("source", cloudEvent.Source is null), ("type", cloudEvent.Type is null) }
            .Where(m => m.Item2).Select(m => m.Item1).ToList();
        if (missing.Count > 0) throw Problems.BadRequest($"CloudEvent lacks required attribute(s): {string.Join(", ", missing)}");
        return cloudEvent;
    }

    private static string? MediaTypeOf(string? contentType) =>
        string.IsNullOrWhiteSpace(contentType) ? null : contentType.Split(';', 2)[0].Trim();

    /// <summary>The event as structured-mode JSON (used to keep an undeliverable event whole in the dead-letter topic).</summary>
    public static string ToJson(CloudEvent cloudEvent) =>
        Encoding.UTF8.GetString(Formatter.EncodeStructuredModeMessage(cloudEvent, out _).Span);
}
