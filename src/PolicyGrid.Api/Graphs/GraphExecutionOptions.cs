namespace PolicyGrid.Api.Graphs;

/// <summary>Limits of graph runs (configuration section <c>PolicyGrid:Graphs</c>); a graph's metadata may tighten them.</summary>
public sealed class GraphExecutionOptions
{
    public const string Section = "PolicyGrid:Graphs";

    /// <summary>Deadline of a whole graph run unless <c>graph_metadata.deadline_seconds</c> or the call's <c>timeout_seconds</c> says otherwise.</summary>
    public double DefaultDeadlineSeconds { get; set; } = 60;

    /// <summary>No run may ask for more than this.</summary>
    public double MaxDeadlineSeconds { get; set; } = 3600;

    /// <summary>Nodes of one run that may be running at once.</summary>
    public int MaxParallelism { get; set; } = 16;

    /// <summary>
    /// How long the record of an asynchronous run (<c>GET /graph/executions/{id}</c>) is kept after it started; never less
    /// than <see cref="MaxDeadlineSeconds"/>, so no run loses its record while it can still be running.
    /// </summary>
    public TimeSpan KeepExecutionsFor { get; set; } = TimeSpan.FromDays(7);

    /// <summary>Most records of finished asynchronous runs kept; the oldest go first. Runs still going are never counted or removed.</summary>
    public int MaxFinishedExecutions { get; set; } = 10_000;

    /// <summary>How often old execution records are removed.</summary>
    public TimeSpan PruneInterval { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Most nodes a graph may have, checked when it is created or updated. Without it only the request body's size bounded
    /// a graph (some 100,000 nodes in 1 MiB), and every answer naming its nodes grew with it.
    /// </summary>
    public int MaxNodes { get; set; } = 1000;

    /// <summary>Asynchronous runs this server runs at once, whoever started them; one more answers 429 overloaded.</summary>
    public int MaxAsyncRuns { get; set; } = 256;

    /// <summary>
    /// Asynchronous runs one caller (a token's name; <c>anonymous</c> on an open server) may have running at once, so one
    /// caller cannot take every slot of <see cref="MaxAsyncRuns"/>; one more answers 429 overloaded. Above
    /// <see cref="MaxAsyncRuns"/>, that is the one that binds.
    /// </summary>
    public int MaxAsyncRunsPerCaller { get; set; } = 64;

    /// <summary>Retry-After (seconds) sent with the 429 of an asynchronous run refused by those limits.</summary>
    public int RetryAfterSeconds { get; set; } = 1;
}

/// <summary>Refuses graph settings no run could work with, at start, naming each.</summary>
public sealed class GraphExecutionOptionsValidator : Microsoft.Extensions.Options.IValidateOptions<GraphExecutionOptions>
{
    public Microsoft.Extensions.Options.ValidateOptionsResult Validate(string? name, GraphExecutionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var checks = new PolicyGrid.Runtime.SettingChecks(GraphExecutionOptions.Section);
        checks.Check(options.DefaultDeadlineSeconds > 0 && double.IsFinite(options.DefaultDeadlineSeconds), "DefaultDeadlineSeconds", "a number greater than 0", options.DefaultDeadlineSeconds);
        checks.Check(options.MaxDeadlineSeconds > 0 && double.IsFinite(options.MaxDeadlineSeconds), "MaxDeadlineSeconds", "a number greater than 0", options.MaxDeadlineSeconds);
        checks.Check(options.MaxParallelism >= 1, "MaxParallelism", "1 or more", options.MaxParallelism);
        checks.Check(options.KeepExecutionsFor > TimeSpan.Zero, "KeepExecutionsFor", "greater than zero", options.KeepExecutionsFor);
        checks.Check(options.MaxFinishedExecutions >= 0, "MaxFinishedExecutions", "0 or more", options.MaxFinishedExecutions);
        checks.Check(options.PruneInterval > TimeSpan.Zero, "PruneInterval", "greater than zero", options.PruneInterval);
        checks.Check(options.MaxNodes >= 1, "MaxNodes", "1 or more", options.MaxNodes);
        checks.Check(options.MaxAsyncRuns >= 1, "MaxAsyncRuns", "1 or more", options.MaxAsyncRuns);
        // Not held to MaxAsyncRuns: lowering that alone must not stop the server; the lower of the two binds.
        checks.Check(options.MaxAsyncRunsPerCaller >= 1, "MaxAsyncRunsPerCaller", "1 or more", options.MaxAsyncRunsPerCaller);
        checks.Check(options.RetryAfterSeconds >= 0, "RetryAfterSeconds", "0 or more", options.RetryAfterSeconds);
        return checks.Result;
    }
}
