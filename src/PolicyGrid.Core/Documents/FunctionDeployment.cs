using System.Text.Json.Nodes;
using PolicyGrid.Core.Identity;

namespace PolicyGrid.Core.Documents;

/// <summary>
/// Suggested lifecycle words for a function. The contract names no set, so any non-empty word is
/// stored as given; the function host owns the meaning.
/// </summary>
public static class FunctionStatus
{
    public const string Pending = "pending";
    public const string Running = "running";
    public const string Failed = "failed";
}

/// <summary>
/// A deployed Type 4 function (the contract's "Function"): one or more stateful instances of a
/// policy snapshot. <see cref="FunctionPolicyData"/> is the policy document as it was when deployed,
/// parameters included; updates to the policy do not reach it until redeployed.
/// </summary>
public sealed record FunctionDeployment : IDocument<FunctionDeployment>
{
    public static string Collection => Ports.Collections.Functions;

    public static IReadOnlySet<string> IdentityFields { get; } = new HashSet<string>(StringComparer.Ordinal) { "function_id" };

    public const int DefaultTargetCpuUtilizationPercentage = 80;

    public string FunctionId { get; init; } = "";

    public string Id => FunctionId;

    public string FunctionExecutorId { get; init; } = "";
    public string FunctionExecutorUri { get; init; } = "";
    public JsonObject FunctionMetadata { get; init; } = [];
    public IReadOnlyList<string> FunctionTags { get; init; } = [];
    public string FunctionPolicyRuleUri { get; init; } = "";
    public JsonObject FunctionPolicyData { get; init; } = [];
    public int Replicas { get; init; } = 1;
    /// <summary>Always complete: <c>enabled, min_replicas, max_replicas, target_cpu_utilization_percentage</c>.</summary>
    public JsonObject Autoscaling { get; init; } = [];
    public string Status { get; init; } = FunctionStatus.Pending;
    public string CreatedAt { get; init; } = "";
    public string UpdatedAt { get; init; } = "";

    public PolicyUri PolicyUri => PolicyUri.Parse(FunctionPolicyRuleUri, "function_policy_rule_uri");

    public static FunctionDeployment FromJson(JsonObject body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var f = new DocumentFields(body);
        var function = new FunctionDeployment
        {
            FunctionId = f.RequiredId("function_id"),
            FunctionExecutorId = f.String("function_executor_id"),
            FunctionExecutorUri = f.String("function_executor_uri"),
            FunctionMetadata = f.Object("function_metadata"),
            FunctionTags = f.StringList("function_tags"),
            FunctionPolicyRuleUri = f.RequiredString("function_policy_rule_uri"),
            FunctionPolicyData = f.Object("function_policy_data"),
            Replicas = (int)f.Integer("replicas", 1, min: 1, max: 1000),
            Status = f.String("status", FunctionStatus.Pending) is { Length: > 0 } s ? s : FunctionStatus.Pending,
            CreatedAt = f.Timestamp("created_at"),
            UpdatedAt = f.Timestamp("updated_at"),
        };
        if (function.FunctionPolicyRuleUri.Length > 0 && !PolicyUri.TryParse(function.FunctionPolicyRuleUri, out _, out var error))
            f.Add("function_policy_rule_uri", error);
        function = function with { Autoscaling = ReadAutoscaling(f, function.Replicas) };
        // With autoscaling on, replicas is kept within min..max (a document stored before deployments were clamped may
        // say 10 with max_replicas 3): the instances started and the Dapr actors allotted follow the clamped count.
        if (f.Errors.Count == 0 && function.Autoscaling["enabled"]!.GetValue<bool>())
            function = function with { Replicas = (int)Math.Clamp(function.Replicas, function.Autoscaling["min_replicas"]!.GetValue<long>(), function.Autoscaling["max_replicas"]!.GetValue<long>()) };
        f.ThrowIfInvalid();
        return function;
    }

    private static JsonObject ReadAutoscaling(DocumentFields f, int replicas)
    {
        var given = f.Object("autoscaling");
        var a = new DocumentFields(given, "autoscaling");
        var enabled = a.Boolean("enabled", false);
        // As the deployment request reads them: a bound not given never contradicts one given (replicas 5 with only
        // max_replicas 3 is min 3).
        var maxGiven = given.TryGetPropertyValue("max_replicas", out var m) && m is not null;
        var max = a.Integer("max_replicas", 0, min: 1, max: 1000);
        var min = a.Integer("min_replicas", maxGiven && max > 0 ? Math.Min(replicas, max) : replicas, min: 1, max: 1000);
        if (!maxGiven || max < 1) max = Math.Max(replicas, min);
        var target = a.Integer("target_cpu_utilization_percentage", DefaultTargetCpuUtilizationPercentage, min: 1, max: 100);
        if (min > max) a.Add("min_replicas", $"{min} is greater than max_replicas {max}");
        f.AddRange(a.Errors);
        given["enabled"] = enabled;
        given["min_replicas"] = min;
        given["max_replicas"] = max;
        given["target_cpu_utilization_percentage"] = target;
        return given;
    }

    public JsonObject ToJson() => new()
    {
        ["function_id"] = FunctionId,
        ["function_executor_id"] = FunctionExecutorId,
        ["function_executor_uri"] = FunctionExecutorUri,
        ["function_metadata"] = FunctionMetadata.DeepClone(),
        ["function_tags"] = DocumentFields.ToArray(FunctionTags),
        ["function_policy_rule_uri"] = FunctionPolicyRuleUri,
        ["function_policy_data"] = FunctionPolicyData.DeepClone(),
        ["replicas"] = Replicas,
        ["autoscaling"] = Autoscaling.DeepClone(),
        ["status"] = Status,
        ["created_at"] = CreatedAt,
        ["updated_at"] = UpdatedAt,
    };

    /// <summary>Sets created_at (kept from <paramref name="existing"/>, else now) and updated_at (now).</summary>
    public FunctionDeployment WithTimestamps(FunctionDeployment? existing, DateTimeOffset now) => this with
    {
        CreatedAt = Timestamps.CreatedAt(existing?.CreatedAt, now),
        UpdatedAt = Timestamps.Format(now),
    };

    /// <summary>The document as reads answer it: secrets in the policy snapshot as "***".</summary>
    public JsonObject ToRedactedJson() => Templates.TemplateSecrets.RedactFunction(ToJson());
}
