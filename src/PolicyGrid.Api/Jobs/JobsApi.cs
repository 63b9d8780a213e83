using System.ComponentModel;
using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using PolicyGrid.Api.Auth;
using PolicyGrid.Api.Documents;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using SortKey = PolicyGrid.Core.Ports.SortKey;

namespace PolicyGrid.Api.Jobs;

/// <summary>
/// Type 3 jobs: submit (to a named executor or one chosen by allocation), read with an optional
/// long-poll, query, cancel; the node routes a registry forwards to (<c>POST /create_job</c>); and the
/// result callback of remote runners. Also maps create-infra / remove-infra (<see cref="InfraApi"/>).
/// </summary>
public static class JobsApi
{
    /// <summary>The name of <c>POST /jobs/{job_id}/result</c>: job runners call it with their per-job token, not an API token.</summary>
    public const string ReportResultEndpoint = "ReportJobResult";

    public static IServiceCollection AddJobsApi(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<JobsOptions>().Bind(configuration.GetSection(JobsOptions.Section)).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Microsoft.Extensions.Options.IValidateOptions<JobsOptions>, JobsOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<JobSignals>();
        services.AddSingleton<JobResultTokens>();
        services.AddSingleton<ExecutorAllocation>();
        services.AddSingleton<JobTransports>();
        services.AddSingleton<JobBoard>();
        services.AddSingleton<IJobTransport, InprocJobTransport>();
        services.AddSingleton<IJobTransport, RemoteJobTransport>();
        services.AddSingleton<IJobTransport, DaprJobTransport>();
        // Without the HTTP client's own log (a node that is down logged the full stack trace of every call); the job's
        // error says what failed.
        services.AddHttpClient(RemoteJobTransport.HttpClientName, c => c.Timeout = TimeSpan.FromSeconds(90)).RemoveAllLoggers();
        services.AddHostedService<JobReconciler>();
        services.TryAddSingleton<JobRetention>();
        services.AddHostedService(sp => sp.GetRequiredService<JobRetention>());
        return services;
    }

    public static IEndpointRouteBuilder MapJobsApi(this IEndpointRouteBuilder app)
    {
        var jobs = app.MapGroup("/jobs").WithTags("Jobs");
        jobs.MapPost("/submit/{executor_id}", SubmitTo).WithName("SubmitJob").WithSummary("Run a policy once as a job on the named executor (Type 3)")
            .WithDescription("Body: {name, policy_rule_uri, policy_rule_parameters, node_selector, inputs, timeout_seconds?}. Answers the job record at once (status pending); read it with GET /jobs/{job_id}?wait=<seconds>.");
        jobs.MapPost("/submit", SubmitAnywhere).WithName("SubmitJobAllocated").WithSummary("Run a policy once as a job on an executor chosen by the allocation rule")
            .WithDescription("Also answers POST /jobs/submit/ (routing ignores the trailing slash).");
        jobs.MapPost("/query", Query).WithName("QueryJobs").WithSummary("Find jobs with a Mongo-style filter");
        jobs.MapQueryIsPostOnly("GET /jobs/{job_id}");
        jobs.MapGet("/{job_id}", Get).WithName("GetJob").WithSummary("A job's status and result; ?wait=<seconds> holds the answer until the job ends");
        jobs.MapDelete("/{job_id}", Cancel).WithName("CancelJob").WithSummary("Cancel a job (a job that already ended is answered unchanged)");
        jobs.MapPost("/{job_id}/result", Report).WithName(ReportResultEndpoint).WithSummary("A job runner reports its result (per-job token)")
            .WithDescription("Used by runners in Kubernetes. Authorization: Bearer <the job's result token>. Body: {status: succeeded|failed|timed_out, result, error}.")
            .AllowAnonymous(); // authenticated by the per-job token instead of an API token

        app.MapPost("/create_job", CreateJob).WithTags("Executor node").WithName("NodeCreateJob")
            .WithSummary("Executor node: run a job a registry forwarded (body: the job record, job_id included)");
        app.MapInfraApi();
        return app;
    }

    public static Task<EnvelopeOk<JsonObject>> SubmitTo([FromRoute(Name = "executor_id"), Description("The executor to run on")] string executorId, JsonBody body, JobBoard board, HttpContext http, CancellationToken ct) =>
        SubmitAsync(executorId, body, board, http, ct);

    public static Task<EnvelopeOk<JsonObject>> SubmitAnywhere(JsonBody body, JobBoard board, HttpContext http, CancellationToken ct) =>
        SubmitAsync(null, body, board, http, ct);

    private static async Task<EnvelopeOk<JsonObject>> SubmitAsync(string? executorId, JsonBody body, JobBoard board, HttpContext http, CancellationToken ct)
    {
        var fields = body.RequireObject();
        var job = await IgnoredFields.ExplainingRefusals(fields, RecordFields, "a job", () => board.SubmitAsync(executorId, fields, Deprecating(http), ct));
        return Submitted(job, fields);
    }

    // A job of a deprecated policy still runs; its submit's answer says so, as every execution of one does.
    private static Action Deprecating(HttpContext http) => () => http.Response.Headers["Deprecation"] = "true";

    /// <summary>
    /// The fields of a job record, which holds every field a submission may carry: what a refused submission names as
    /// ignored is what an accepted one's warnings would (a record's own fields, such as job_id, are not warned of).
    /// </summary>
    private static readonly IReadOnlySet<string> RecordFields = new HashSet<string>(JobBoard.SubmitFields.Concat(
        ["job_id", "executor_id", "status", "result", "error", "created_at", "started_at", "finished_at"]), StringComparer.Ordinal);

    // The job record holds every field a submission may carry, so a field it lacks was dropped: the answer says so.
    private static EnvelopeOk<JsonObject> Submitted(JsonObject job, JsonObject body) =>
        Answer.Ok(job, IgnoredFields.Warnings(body, job, "a job"));

    public static async Task<EnvelopeOk<JsonObject>> Get([FromRoute(Name = "job_id")] string jobId, [Description("Seconds to wait for the job to end")] string? wait, JobBoard board, CancellationToken ct) =>
        Answer.Ok(await board.GetAsync(jobId, Wait(wait), ct));

    public static async Task<EnvelopeOk<JsonObject>> Cancel([FromRoute(Name = "job_id")] string jobId, JobBoard board, HttpContext http, CancellationToken ct) =>
        Answer.Ok(await board.CancelAsync(jobId, http.Caller(), ct));

    public static async Task<EnvelopeOk<IReadOnlyList<JsonObject>>> Query(JsonBody body, QueryWindow window, JobBoard board, CancellationToken ct)
    {
        var filter = FilterParser.Parse(body.Node);
        return Answer.Ok(await board.QueryAsync(window.Over(filter), ct));
    }

    public static async Task<EnvelopeOk<JsonObject>> Report([FromRoute(Name = "job_id")] string jobId, JsonBody body, HttpContext http, JobBoard board, CancellationToken ct)
    {
        var header = http.Request.Headers.Authorization.ToString();
        var token = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header["Bearer ".Length..].Trim() : "";
        return Answer.Ok(await board.ReportAsync(jobId, token, body.RequireObject(), ct));
    }

    public static async Task<EnvelopeOk<JsonObject>> CreateJob(JsonBody body, JobBoard board, CancellationToken ct) =>
        Answer.Ok(await board.AcceptAsync(body.RequireObject(), ct));

    private static readonly TimeSpan LongestWait = TimeSpan.FromDays(1);

    private static TimeSpan Wait(string? wait)
    {
        if (string.IsNullOrEmpty(wait)) return TimeSpan.Zero;
        if (!double.TryParse(wait, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || seconds < 0 || !double.IsFinite(seconds))
            throw Problems.BadRequest($"wait '{wait}' must be a number of seconds, 0 or more");
        // Any wait past the board's maximum is held to that maximum (docs/jobs.md), so a huge one is
        // capped here first, before it could overflow a TimeSpan.
        return TimeSpan.FromSeconds(Math.Min(seconds, LongestWait.TotalSeconds));
    }
}

/// <summary>
/// Re-attaches to jobs a previous run of this server left pending or running. It runs in StartAsync,
/// which the host finishes before the server takes requests, so a job submitted now is never
/// mistaken for a left-over one. A store that is not reachable yet (a sidecar still starting) does
/// not stop the server: reconciling is retried in the background until it succeeds.
/// </summary>
public sealed class JobReconciler(JobBoard board, IHostApplicationLifetime lifetime, Microsoft.Extensions.Logging.ILogger<JobReconciler> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var startedAt = DateTimeOffset.UtcNow;
        try
        {
            await board.ReconcileAsync(startedAt, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Microsoft.Extensions.Logging.LoggerExtensions.LogWarning(logger, "reconciling left-over jobs failed ({Error}); retrying in the background", e.Message);
            _ = Task.Run(() => RetryAsync(startedAt, lifetime.ApplicationStopping), CancellationToken.None);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private async Task RetryAsync(DateTimeOffset startedAt, CancellationToken stopping)
    {
        for (var delay = TimeSpan.FromSeconds(2); !stopping.IsCancellationRequested; delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromMinutes(1).Ticks)))
        {
            try
            {
                await Task.Delay(delay, stopping);
                await board.ReconcileAsync(startedAt, stopping);
                return;
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Microsoft.Extensions.Logging.LoggerExtensions.LogWarning(logger, "reconciling left-over jobs failed again ({Error})", e.Message);
            }
        }
    }
}
