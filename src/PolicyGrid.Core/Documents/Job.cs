using System.Text.Json.Nodes;
using PolicyGrid.Core.Querying;
using PolicyGrid.Core.Identity;

namespace PolicyGrid.Core.Documents;

public static class JobStatus
{
    public const string Pending = "pending";
    public const string Running = "running";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";
    public const string TimedOut = "timed_out";
    public const string Cancelled = "cancelled";
    public static readonly IReadOnlyList<string> All = [Pending, Running, Succeeded, Failed, TimedOut, Cancelled];

    /// <summary>Statuses a job never leaves.</summary>
    public static bool IsFinal(string status) => status is Succeeded or Failed or TimedOut or Cancelled;
}

/// <summary>A one-off Type 3 run of a policy. <see cref="JobId"/> is a server-made UUID.</summary>
public sealed record Job : IDocument<Job>
{
    public static string Collection => Ports.Collections.Jobs;

    public static IReadOnlySet<string> IdentityFields { get; } = new HashSet<string>(StringComparer.Ordinal) { "job_id" };

    /// <summary>Used when a submission gives no timeout_seconds.</summary>
    public const double DefaultTimeoutSeconds = 3600;

    public string JobId { get; init; } = "";

    public string Id => JobId;

    /// <summary>Empty until an allocation rule has chosen one.</summary>
    public string ExecutorId { get; init; } = "";
    public string Name { get; init; } = "";
    public string PolicyRuleUri { get; init; } = "";
    public JsonObject PolicyRuleParameters { get; init; } = [];
    /// <summary>label: value pairs an executor's <c>executor_metadata.labels</c> must carry.</summary>
    public JsonObject NodeSelector { get; init; } = [];
    /// <summary>The one input_data given to the policy (any JSON; {} when not given).</summary>
    public JsonNode Inputs { get; init; } = new JsonObject();
    public double TimeoutSeconds { get; init; } = DefaultTimeoutSeconds;
    public string Status { get; init; } = JobStatus.Pending;
    /// <summary>What the policy returned ({} until it has).</summary>
    public JsonNode Result { get; init; } = new JsonObject();
    public string Error { get; init; } = "";
    public string CreatedAt { get; init; } = "";
    public string StartedAt { get; init; } = "";
    public string FinishedAt { get; init; } = "";

    public bool IsFinished => JobStatus.IsFinal(Status);

    public static Job FromJson(JsonObject body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var f = new DocumentFields(body);
        var job = new Job
        {
            JobId = f.RequiredId("job_id"),
            ExecutorId = f.String("executor_id"),
            Name = f.String("name"),
            PolicyRuleUri = f.RequiredString("policy_rule_uri"),
            PolicyRuleParameters = f.Object("policy_rule_parameters"),
            NodeSelector = f.Object("node_selector"),
            Inputs = f.AnyValue("inputs", () => new JsonObject()),
            TimeoutSeconds = f.Number("timeout_seconds", DefaultTimeoutSeconds, exclusiveMin: 0),
            Status = f.Choice("status", JobStatus.Pending, JobStatus.All),
            Result = f.AnyValue("result", () => new JsonObject()),
            Error = f.String("error"),
            CreatedAt = f.Timestamp("created_at"),
            StartedAt = f.Timestamp("started_at"),
            FinishedAt = f.Timestamp("finished_at"),
        };
        if (job.PolicyRuleUri.Length > 0 && !PolicyUri.TryParse(job.PolicyRuleUri, out _, out var error))
            f.Add("policy_rule_uri", error);
        foreach (var (label, value) in job.NodeSelector)
            if (value is not JsonValue v || v.GetValueKind() != System.Text.Json.JsonValueKind.String)
                f.Add($"node_selector.{label}", $"must be a string label value, not {JsonValues.Describe(value)}");
        f.ThrowIfInvalid();
        return job;
    }

    /// <summary>Stamps <c>created_at</c> at submission.</summary>
    public Job Submitted(DateTimeOffset now) => this with { Status = JobStatus.Pending, CreatedAt = Timestamps.Format(now) };

    /// <summary>Moves a pending job to running. A job that already ended stays as it is.</summary>
    public Job Started(DateTimeOffset now) => IsFinished ? this : this with { Status = JobStatus.Running, StartedAt = Timestamps.Format(now) };

    /// <summary>
    /// Records the job's end. The first final status sticks: a cancellation racing a success (or a
    /// late result after a timeout) leaves the job as it first ended, so readers never see it flip.
    /// </summary>
    public Job Finished(string status, JsonNode? result, string error, DateTimeOffset now)
    {
        if (!JobStatus.IsFinal(status)) throw new ArgumentException($"'{status}' is not a final job status", nameof(status));
        if (IsFinished) return this;
        return this with
        {
            Status = status,
            Result = result?.DeepClone() ?? new JsonObject(),
            Error = error ?? "",
            FinishedAt = Timestamps.Format(now),
            StartedAt = StartedAt.Length > 0 ? StartedAt : Timestamps.Format(now),
        };
    }

    public JsonObject ToJson() => new()
    {
        ["job_id"] = JobId,
        ["executor_id"] = ExecutorId,
        ["name"] = Name,
        ["policy_rule_uri"] = PolicyRuleUri,
        ["policy_rule_parameters"] = PolicyRuleParameters.DeepClone(),
        ["node_selector"] = NodeSelector.DeepClone(),
        ["inputs"] = Inputs.DeepClone(),
        ["timeout_seconds"] = TimeoutSeconds,
        ["status"] = Status,
        ["result"] = Result.DeepClone(),
        ["error"] = Error,
        ["created_at"] = CreatedAt,
        ["started_at"] = StartedAt,
        ["finished_at"] = FinishedAt,
    };
}
