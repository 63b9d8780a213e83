using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Transports;

/// <summary>
/// Reads what an executor node (an http(s) node, or the Dapr executor app) answered. Only a JSON object that this server
/// can answer on counts: one that names a key twice, or holds an escaped lone surrogate ("\ud800", valid JSON syntax
/// but no text), parses, yet failed later, with a 500 where its members were read or with a 400 blaming the caller's
/// request body when the answer was written. A PolicyGrid node writes neither.
/// </summary>
public static class NodeAnswers
{
    /// <summary>A success envelope's <c>warnings</c> (strings only), to be passed on to the caller with the node's result.</summary>
    public static IReadOnlyList<string> Warnings(JsonObject envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        return envelope["warnings"] is JsonArray list
            ? [.. list.OfType<JsonValue>().Where(w => w.GetValueKind() == JsonValueKind.String).Select(w => w.GetValue<string>())]
            : [];
    }

    /// <summary>
    /// Whether a node's refusal says the path it was sent to is none of its routes: a PolicyGrid server's "no such route"
    /// 404, or a 405 (the path is one of its routes for another method; the node API's routes take the methods it is
    /// called with). Either way the executor_host_uri is wrong (a path prefix it does not have), not the call.
    /// </summary>
    public static bool IsWrongAddress(int status, string message) =>
        status == 405 || (status == 404 && message.StartsWith(Problems.NoSuchRoute, StringComparison.Ordinal));

    /// <summary>What the caller hears (as a 502 backend_error) when <see cref="IsWrongAddress"/>.</summary>
    public static string WrongAddress(Uri node, string answered) =>
        $"executor node {node} answered {answered}: it has no such route, so its executor_host_uri looks wrong; it must be the root " +
        "address of a PolicyGrid executor node (where serve listens, or that address's path prefix behind a gateway), " +
        "to which the node's routes such as /execute_policy are appended";

    /// <summary>The answer as a JSON object, or null when it is none that can be answered on.</summary>
    public static JsonObject? TryParse(ReadOnlySpan<byte> utf8)
    {
        try
        {
            if (JsonNode.Parse(utf8, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }) is not JsonObject answer) return null;
            // Writing reads every string and name as text: an escaped lone surrogate fails here, not in the caller's answer.
            using var probe = new Utf8JsonWriter(Stream.Null);
            answer.WriteTo(probe);
            return answer;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return null;
        }
    }
}
