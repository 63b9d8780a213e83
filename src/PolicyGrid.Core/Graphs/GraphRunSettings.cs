using System.Globalization;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Graphs;

/// <summary>
/// The run settings a graph carries in <c>graph_metadata</c>: <c>deadline_seconds</c> (a run's deadline when the call
/// names none) and <c>node_retry: {max_attempts, backoff_seconds}</c>. Checked when a graph is written: a mistyped or
/// impossible value was stored and then ignored at every run (a string deadline ran with the default), or broke every
/// run (a backoff past what a TimeSpan holds answered 500).
/// </summary>
public static class GraphRunSettings
{
    /// <summary>Attempts beyond this are not made, whatever <c>node_retry.max_attempts</c> asks.</summary>
    public const int MaxAttempts = 10;

    public static IReadOnlyList<FieldError> Check(JsonObject metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        var f = new DocumentFields(metadata, "graph_metadata");
        if (f.Has("deadline_seconds"))
            CheckSeconds(f, "deadline_seconds", f.Number("deadline_seconds", 1, exclusiveMin: 0), positive: true);
        var retry = f.Object("node_retry"); // names the kind of anything but an object
        if (metadata["node_retry"] is JsonObject)
        {
            var r = new DocumentFields(retry, "graph_metadata.node_retry");
            if (!r.Has("max_attempts")) r.Add("max_attempts", $"is required: how many times a node is tried (1 to {MaxAttempts})");
            else r.Integer("max_attempts", 1, min: 1, max: int.MaxValue); // runs make at most MaxAttempts of them
            if (r.Has("backoff_seconds")) CheckSeconds(r, "backoff_seconds", r.Number("backoff_seconds", 0), positive: false);
            f.AddRange(r.Errors);
        }
        return f.Errors;
    }

    public static void Ensure(JsonObject metadata)
    {
        var errors = Check(metadata);
        if (errors.Count > 0) throw Problems.Validation(errors);
    }

    private static void CheckSeconds(DocumentFields f, string name, double seconds, bool positive)
    {
        if (f.Errors.Any(e => e.Path == f.PathOf(name))) return;
        var shown = seconds.ToString(CultureInfo.InvariantCulture);
        if (!positive && seconds < 0) f.Add(name, $"must be 0 or more seconds, not {shown}");
        else if (seconds > 0 && seconds < TimeSpan.FromTicks(1).TotalSeconds)
            f.Add(name, $"must be at least 0.0000001 seconds (one tick of the clock), not {shown}");
    }

    /// <summary>A number of seconds read leniently (for graphs stored before these checks): finite and above 0, else null.</summary>
    public static double? PositiveSeconds(JsonNode? node) =>
        JsonValues.TryDouble(node, out var seconds) && seconds >= TimeSpan.FromTicks(1).TotalSeconds ? seconds : null;
}
