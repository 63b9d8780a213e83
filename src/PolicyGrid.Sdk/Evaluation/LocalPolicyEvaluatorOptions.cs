using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Sdk.Evaluation;

/// <summary>Where a <see cref="LocalPolicyEvaluator"/> runs the policy.</summary>
public enum EvaluationMode
{
    /// <summary>Fetch the policy and its bundle once, run it here (see <see cref="LocalIsolation"/>).</summary>
    Local,

    /// <summary>Every call goes to an executor's <c>execute_policy</c>.</summary>
    Remote,
}

/// <summary>How a local evaluator hosts the policy.</summary>
public enum LocalIsolation
{
    /// <summary>Embedded CPython in the caller's process: lowest latency, no deadline or memory cap, no crash boundary.</summary>
    InProcess,

    /// <summary>A worker process from the runtime's pool: deadline, memory and process limits, and a crash boundary.</summary>
    WorkerProcess,
}

public sealed record LocalPolicyEvaluatorOptions
{
    public required string PolicyRuleUri { get; init; }

    public EvaluationMode Mode { get; init; } = EvaluationMode.Local;

    public LocalIsolation Isolation { get; init; } = LocalIsolation.InProcess;

    /// <summary>The executor remote mode calls (the embedded server's built-in one is <c>local</c>).</summary>
    public string ExecutorId { get; init; } = "local";

    /// <summary>Merged key by key over the policy's stored parameters (given keys win).</summary>
    public JsonObject? Parameters { get; init; }

    /// <summary>Merged key by key over the policy's stored settings (given keys win).</summary>
    public JsonObject? Settings { get; init; }

    /// <summary>How often the held policy's revision is re-read; an update or retirement shows up within about this long.</summary>
    public TimeSpan RevalidateInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a local evaluator keeps answering from a held revision the registry has not confirmed while its
    /// re-reads fail (it is unreachable or answers 5xx). Past it calls raise 503 <c>backend_unavailable</c>: a retirement or a tightened
    /// policy made during a longer outage must not go unnoticed forever. <see cref="Timeout.InfiniteTimeSpan"/>
    /// serves the held revision for as long as the outage lasts.
    /// </summary>
    public TimeSpan MaxStaleness { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Where bundles are unpacked; by default a fresh directory for this process.</summary>
    public string? CacheDirectory { get; init; }

    public UnpackLimits UnpackLimits { get; init; } = UnpackLimits.Default;

    /// <summary>libpython for <see cref="LocalIsolation.InProcess"/>; else PYTHONNET_PYDLL, else a probe of the usual places.</summary>
    public string? PythonLibrary { get; init; }

    /// <summary>The worker pool for <see cref="LocalIsolation.WorkerProcess"/>; by default one worker with the runtime's safe limits.</summary>
    public WorkerPoolOptions? WorkerPool { get; init; }

    /// <summary>
    /// Deadline of each call in <see cref="LocalIsolation.WorkerProcess"/> (in-process calls cannot be bounded). Unset, it
    /// is the policy's own <c>resource_estimates.timeout_seconds</c>, else <see cref="DefaultCallDeadline"/>, as executors
    /// choose a call's deadline; set, it wins over the policy's, as a call's <c>timeout_seconds</c> does there.
    /// </summary>
    public TimeSpan CallDeadline { get => _callDeadline ?? DefaultCallDeadline; init => _callDeadline = value; }

    private readonly TimeSpan? _callDeadline;

    /// <summary>Whether <see cref="CallDeadline"/> was given (else the policy's estimate decides).</summary>
    internal bool CallDeadlineGiven => _callDeadline is not null;

    /// <summary>The deadline of a call when neither <see cref="CallDeadline"/> nor the policy gives one (the servers' default).</summary>
    public static readonly TimeSpan DefaultCallDeadline = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How many management commands an evaluator keeps to replay on its instance when it is recreated (a management command
    /// failed part way; in <see cref="LocalIsolation.WorkerProcess"/> mode also a crashed, overrun or recycled worker), for a
    /// policy class without <c>get_state</c>; as a Type 4 function's <c>PolicyGrid:Functions:MaxJournalEntries</c>. Past it
    /// management commands raise 409 <c>conflict</c> and run nothing, except those the policy declares <c>read_only</c>. At least 1.
    /// </summary>
    public int MaxJournalEntries { get; init; } = DefaultMaxJournalEntries;

    public const int DefaultMaxJournalEntries = 1000;

    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>
    /// Whether this process can generate code at run time (<see cref="System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported"/>,
    /// false in an app published with <c>PublishAot=true</c>), which <see cref="LocalIsolation.InProcess"/> needs. A seam for tests.
    /// </summary>
    internal Func<bool> DynamicCodeSupported { get; init; } = static () => System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported;
}
