using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Querying;

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

    /// <summary>The one id an executor may not have: its path is the query route.</summary>
    public const string ReservedId = "query";

    public string ExecutorId { get; init; } = "";

    public string Id => ExecutorId;

    public string ExecutorHostUri { get; init; } = "";
    /// <summary><c>labels</c> inside it are matched by a job's node_selector.</summary>
    public JsonObject ExecutorMetadata { get; init; } = [];
    /// <summary><c>vcpus.count</c> and <c>memory</c> are read by allocation (see <see cref="HardwareErrors"/> for their shape).</summary>
    public JsonObject ExecutorHardwareInfo { get; init; } = [];
    public string ExecutorStatus { get; init; } = Documents.ExecutorStatus.Healthy;

    /// <summary>The URI scheme: inproc, http, https or dapr.</summary>
    public string Scheme => ExecutorHostUri[..Math.Max(0, ExecutorHostUri.IndexOf("://", StringComparison.Ordinal))].ToLowerInvariant();

    /// <summary>
    /// Validates a create body or an updated document, including the shape of what allocation reads in
    /// executor_hardware_info, so a bad value is refused where it is written rather than failing every later allocation.
    /// </summary>
    public static PolicyExecutor FromJson(JsonObject body) => Read(body, strict: true);

    /// <summary>
    /// Reads a stored document. An older server accepted any object as executor_hardware_info, so a document it
    /// stored still reads here (Type 2 calls do not depend on it); allocation checks <see cref="HardwareErrors"/> itself.
    /// </summary>
    public static PolicyExecutor FromStored(JsonObject body) => Read(body, strict: false);

    /// <summary>
    /// Reads a stored document for allocation: null, with what is wrong, when the document or the hardware info
    /// allocation reads is not valid (allocation then passes it over rather than failing).
    /// </summary>
    public static PolicyExecutor? ForAllocation(JsonObject stored, out IReadOnlyList<FieldError> problems)
    {
        try
        {
            var executor = FromStored(stored);
            problems = executor.HardwareErrors();
            return problems.Count == 0 ? executor : null;
        }
        catch (PolicyGridException e) when (e.Status == 400)
        {
            problems = e.Errors.Count > 0 ? e.Errors : [new FieldError("", e.Message)];
            return null;
        }
    }

    private static PolicyExecutor Read(JsonObject body, bool strict)
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
        // /executor/query is the query route (POST; other methods answer 405): an executor of that id could be created
        // but never read, updated or deleted.
        if (strict && executor.ExecutorId == ReservedId)
            f.Add("executor_id", $"'{ReservedId}' is taken by POST /executor/query, so an executor of that id could not be read, updated or deleted; choose another id");
        if (executor.ExecutorHostUri.Length > 0) CheckHostUri(f, executor.ExecutorHostUri, strict);
        if (executor.ExecutorMetadata["labels"] is { } labels && labels is not JsonObject)
            f.Add("executor_metadata.labels", $"must be an object of label: value, not {JsonValues.Describe(labels)}");
        if (strict) f.AddRange(executor.HardwareErrors());
        f.ThrowIfInvalid();
        return executor;
    }

    /// <summary>executor_hardware_info.vcpus.count: the executor's vCPUs, when it reports them.</summary>
    public double? VcpuCount => Number(Vcpus?["count"]);

    /// <summary>executor_hardware_info.vcpus.free: the vCPUs it reports free right now, when it does.</summary>
    public double? VcpuFree => Number(Vcpus?["free"]);

    private JsonObject? Vcpus => ExecutorHardwareInfo["vcpus"] as JsonObject;

    private static double? Number(JsonNode? node) => JsonValues.TryDouble(node, out var n) ? n : null;

    // A Kubernetes quantity such as 32Gi, 512M or 1.5e9 (the CLI's --memory writes one; the built-in executor writes bytes).
    private static readonly Regex MemoryQuantity = new(@"^[0-9]+(\.[0-9]+)?([eE][0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?\z", RegexOptions.CultureInvariant);

    /// <summary>
    /// What is wrong with the executor_hardware_info fields allocation reads: <c>vcpus</c> must be an object whose
    /// <c>count</c> and <c>free</c>, when given, are numbers of at least 0; <c>memory</c>, when given, a number of
    /// bytes or a quantity such as "32Gi". Any other key is the operator's own and free-form.
    /// </summary>
    public IReadOnlyList<FieldError> HardwareErrors()
    {
        const string field = "executor_hardware_info";
        var errors = new List<FieldError>();
        switch (ExecutorHardwareInfo["vcpus"])
        {
            case var none when DocumentFields.IsNull(none):
                break;
            case JsonObject vcpus:
                foreach (var key in new[] { "count", "free" })
                {
                    var value = vcpus[key];
                    if (DocumentFields.IsNull(value)) continue;
                    if (Number(value) is not { } n)
                        errors.Add(new FieldError($"{field}.vcpus.{key}", $"must be a number, not {JsonValues.Describe(value)}"));
                    else if (n < 0)
                        errors.Add(new FieldError($"{field}.vcpus.{key}", $"must be at least 0, not {n.ToString(System.Globalization.CultureInfo.InvariantCulture)}"));
                }
                break;
            case var other:
                errors.Add(new FieldError($"{field}.vcpus", $"must be an object such as {{\"count\": 4}}, not {JsonValues.Describe(other)}"));
                break;
        }
        var memory = ExecutorHardwareInfo["memory"];
        if (!DocumentFields.IsNull(memory))
        {
            if (Number(memory) is { } bytes)
            {
                if (bytes < 0) errors.Add(new FieldError($"{field}.memory", "must be at least 0 bytes"));
            }
            else if (!JsonValues.TryString(memory, out var text) || !MemoryQuantity.IsMatch(text))
            {
                errors.Add(new FieldError($"{field}.memory",
                    $"must be a number of bytes or a quantity such as \"32Gi\", not {(JsonValues.TryString(memory, out var t) ? $"'{t}'" : JsonValues.Describe(memory))}"));
            }
        }
        return errors;
    }

    // strict: what is written now (create, update); documents stored by older versions keep being read as they were.
    private static void CheckHostUri(DocumentFields f, string text, bool strict)
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
        // An app id or the local pool is all these name: a path, port, query or user would be ignored, so the stored
        // address would say more than is used.
        else if (strict && scheme is "dapr" or "inproc" && (uri.AbsolutePath is not ("" or "/") || uri.Query.Length > 0 || uri.Fragment.Length > 0
                 || !uri.IsDefaultPort || uri.UserInfo.Length > 0))
            f.Add("executor_host_uri", $"'{text}' must be {scheme}://{(scheme == "dapr" ? "<app-id>" : "local")} and nothing more");
        // A node's routes are appended to the address as written (http://node:8080/base + /execute_policy): a query or
        // fragment would swallow them (the call went to /base?q=1/execute_policy), and user:password is never sent
        // (HttpClient drops it; nodes take RemoteExecutors:Token) yet would be shown in every read of the executor.
        else if (strict && scheme is "http" or "https")
        {
            if (text.Trim().Length != text.Length)
                f.Add("executor_host_uri", $"'{text}' starts or ends with whitespace; send the address alone");
            else if (uri.UserInfo.Length > 0)
                f.Add("executor_host_uri", "must not hold a user name or password: they are not sent to the node (HttpClient drops them) " +
                    "and every read of the executor would show them; give the node's token in PolicyGrid:Runtime:RemoteExecutors:Token instead");
            else if (uri.Query.Length > 0 || uri.Fragment.Length > 0 || text.EndsWith('?') || text.EndsWith('#'))
                f.Add("executor_host_uri", $"'{text}' has a query or fragment; the node's routes (/execute_policy, ...) are added to the address's " +
                    "path, so give scheme://host:port and at most a path prefix, such as http://node:8080 or http://gateway/executor");
        }
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
