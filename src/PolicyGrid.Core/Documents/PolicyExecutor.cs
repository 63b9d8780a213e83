using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Documents;

public static class ExecutorStatus
{
    public const string Healthy = "healthy";
    public const string Unhealthy = "unhealthy";
    public const string Draining = "draining";
    public static readonly IReadOnlyList<string> All = [Healthy, Unhealthy, Draining];
}

/// <summary>
/// A place policies run (Type 2 and infrastructure). Its kind follows from the URI scheme:
/// <c>inproc://local</c>, <c>http(s)://host:port</c> (a remote executor node) or <c>dapr://app-id</c>.
/// </summary>
public sealed record PolicyExecutor : IDocument<PolicyExecutor>
{
    public static string Collection => Ports.Collections.Executors;

    public static IReadOnlySet<string> IdentityFields { get; } = new HashSet<string>(StringComparer.Ordinal) { "executor_id" };

    public static readonly IReadOnlyList<string> Schemes = ["inproc", "http", "https", "dapr"];

    public string ExecutorId { get; init; } = "";

    public string Id => ExecutorId;

    public string ExecutorHostUri { get; init; } = "";
    /// <summary><c>labels</c> inside it are matched by a job's node_selector.</summary>
    public JsonObject ExecutorMetadata { get; init; } = [];
    /// <summary><c>vcpus.count</c> and <c>memory</c> are read by allocation.</summary>
    public JsonObject ExecutorHardwareInfo { get; init; } = [];
    public string ExecutorStatus { get; init; } = Documents.ExecutorStatus.Healthy;

    /// <summary>The URI scheme: inproc, http, https or dapr.</summary>
    public string Scheme => ExecutorHostUri[..Math.Max(0, ExecutorHostUri.IndexOf("://", StringComparison.Ordinal))].ToLowerInvariant();

    public static PolicyExecutor FromJson(JsonObject body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var f = new DocumentFields(body);
        var executor = new PolicyExecutor
        {
            ExecutorId = f.RequiredId("executor_id"),
            ExecutorHostUri = f.RequiredString("executor_host_uri"),
            ExecutorMetadata = f.Object("executor_metadata"),
            ExecutorHardwareInfo = f.Object("executor_hardware_info"),
            ExecutorStatus = f.Choice("executor_status", Documents.ExecutorStatus.Healthy, Documents.ExecutorStatus.All),
        };
        if (executor.ExecutorHostUri.Length > 0) CheckHostUri(f, executor.ExecutorHostUri);
        if (executor.ExecutorMetadata["labels"] is { } labels && labels is not JsonObject)
            f.Add("executor_metadata.labels", $"must be an object of label: value, not {DocumentFields.Describe(labels)}");
        f.ThrowIfInvalid();
        return executor;
    }

    private static void CheckHostUri(DocumentFields f, string text)
    {
        if (!System.Uri.TryCreate(text, UriKind.Absolute, out var uri) || !text.Contains("://", StringComparison.Ordinal))
        {
            f.Add("executor_host_uri", $"'{text}' is not an absolute URI such as inproc://local, http://host:port or dapr://app-id");
            return;
        }
        var scheme = uri.Scheme.ToLowerInvariant();
        if (!Schemes.Contains(scheme, StringComparer.Ordinal))
            f.Add("executor_host_uri", $"scheme '{scheme}' is not one of {string.Join(", ", Schemes)}");
        else if (uri.Host.Length == 0)
            f.Add("executor_host_uri", $"'{text}' names no host or app id");
        else if (scheme == "inproc" && !string.Equals(uri.Host, "local", StringComparison.OrdinalIgnoreCase))
            f.Add("executor_host_uri", $"'{text}' names no in-process executor: the only one is inproc://local, this server's own");
    }

    public JsonObject ToJson() => new()
    {
        ["executor_id"] = ExecutorId,
        ["executor_host_uri"] = ExecutorHostUri,
        ["executor_metadata"] = ExecutorMetadata.DeepClone(),
        ["executor_hardware_info"] = ExecutorHardwareInfo.DeepClone(),
        ["executor_status"] = ExecutorStatus,
    };
}
