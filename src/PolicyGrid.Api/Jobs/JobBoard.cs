using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Core.Templates;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Jobs;

/// <summary>
/// Keeps every Type 3 job's record in <see cref="Collections.Jobs"/> and moves it through
/// pending → running → succeeded | failed | timed_out | cancelled. It is the only writer of a job's
/// status besides the job itself (a local job process, or a runner's result callback), and every
/// write is revision-checked, so whichever end is recorded first stands and a late one is dropped:
/// a result is never overwritten and never lost. Launchers run jobs; the board records them.
/// </summary>
public sealed class JobBoard(
    IDocumentStore store,
    JobTransports transports,
    ExecutorAllocation allocation,
    JobSignals signals,
    JobResultTokens tokens,
    IOptions<JobsOptions> options,
    IHostApplicationLifetime lifetime,
    TimeProvider clock,
    ILogger<JobBoard> logger,
    DecisionLog? decisions = null)
{
    /// <summary>The fields of a job submission (<c>POST /jobs/submit</c>).</summary>
    public static readonly IReadOnlySet<string> SubmitFields = new HashSet<string>(StringComparer.Ordinal)
        { "name", "policy_rule_uri", "policy_rule_parameters", "node_selector", "inputs", "timeout_seconds" };
    private readonly ConcurrentDictionary<string, Task> runs = new(StringComparer.Ordinal);
    // Jobs this server follows on another server (an http(s):// or dapr:// executor): one of them arriving back at this
    // server's own /create_job means that executor is this server itself.
    private readonly ConcurrentDictionary<string, byte> forwarded = new(StringComparer.Ordinal);

    /// <summary>Jobs this process is following right now (tests wait on these; shutdown leaves them running).</summary>
    public IReadOnlyCollection<Task> Runs => runs.Values.ToArray();

    /// <summary>POST /jobs/submit[/{executor_id}]: validates, chooses or checks the executor, records the job as pending and starts it.</summary>
    public Task<JsonObject> SubmitAsync(string? executorId, JsonObject body, CancellationToken ct) => SubmitAsync(executorId, body, null, ct);

    /// <summary>
    /// <see cref="SubmitAsync(string?, JsonObject, CancellationToken)"/>, calling <paramref name="deprecated"/> when the
    /// job's policy is deprecated (it still runs; the API answers a <c>Deprecation</c> header, as for Type 2).
    /// </summary>
    public async Task<JsonObject> SubmitAsync(string? executorId, JsonObject body, Action? deprecated, CancellationToken ct)
    {
        var candidate = new JsonObject();
        foreach (var (key, value) in body)
            if (SubmitFields.Contains(key)) candidate[key] = value?.DeepClone();
        candidate["job_id"] = Guid.NewGuid().ToString();
        // Checked here, not first when the job runs: a pending job that can only fail is no answer.
        CheckTimeout(body);
        CheckName(body);
        var job = Job.FromJson(candidate);
        var policy = await PolicyAsync(job.PolicyRuleUri, ct);
        CheckAgainstPolicy(job, policy);
        job = job with { TimeoutSeconds = Timeout(body, policy) };

        var executor = string.IsNullOrEmpty(executorId)
            ? await allocation.ChooseAsync(job, ct)
            : await ExecutorForNewWorkAsync(executorId, ct);
        var launcher = LauncherFor(executor);
        job = job with { ExecutorId = executor.ExecutorId, Status = JobStatus.Pending, CreatedAt = Now() };
        await store.CreateAsync(Collections.Jobs, job.JobId, job.ToJson(), ct);
        logger.LogInformation("job {JobId}: {Policy} submitted to executor {ExecutorId} (timeout {Timeout}s)", job.JobId, job.PolicyRuleUri, executor.ExecutorId, job.TimeoutSeconds);
        Start(job, launcher, policy);
        if (policy.IsDeprecated) deprecated?.Invoke();
        return Present(job.ToJson(), policy);
    }

    /// <summary>POST /create_job (executor node API): records a job a registry forwarded and runs it with this node's launcher.</summary>
    public async Task<JsonObject> AcceptAsync(JsonObject body, CancellationToken ct)
    {
        CheckName(body);
        CheckTimeout(body); // this node's own limit holds whatever the registry allowed
        var given = Job.FromJson(body);
        if (await store.GetAsync(Collections.Jobs, given.JobId, ct) is { } existing)
        {
            // Either the registry retried (the job already runs here, so this node follows it), or registry and
            // node share one store (Dapr) and the registry recorded it: then it is ours to start. The registry marks a
            // job running before it forwards it, so that is how such a job arrives; one still unfollowed here never
            // started (a job this node ran is followed until it ends, and re-attached at start).
            var recorded = Job.FromJson(existing.Body);
            // Followed here as another server's job and then started here too, it would wait on itself until the
            // backstop deadline (an hour and more) and never run: refused, the forwarding side records why at once.
            if (forwarded.ContainsKey(recorded.JobId))
                throw Problems.Conflict($"job '{recorded.JobId}' was forwarded here by this same server: executor '{recorded.ExecutorId}' points back at it. Register this server's own executor as inproc://local, or name it in PolicyGrid:Jobs:NodeExecutorId");
            if (recorded.Status is JobStatus.Pending or JobStatus.Running && !runs.ContainsKey(recorded.JobId))
                Start(recorded, transports.NodeLauncher(), await PolicyAsync(recorded.PolicyRuleUri, ct));
            return await PresentAsync(existing.Body, ct);
        }
        var policy = await PolicyAsync(given.PolicyRuleUri, ct);
        CheckAgainstPolicy(given, policy);
        var job = given with { Status = JobStatus.Pending, Result = new JsonObject(), Error = "", CreatedAt = Now(), StartedAt = "", FinishedAt = "" };
        await store.CreateAsync(Collections.Jobs, job.JobId, job.ToJson(), ct);
        logger.LogInformation("job {JobId}: {Policy} accepted from a registry", job.JobId, job.PolicyRuleUri);
        Start(job, transports.NodeLauncher(), policy);
        return Present(job.ToJson(), policy);
    }

    /// <summary>GET /jobs/{id}: the record, after waiting up to <paramref name="wait"/> for the job to end.</summary>
    public async Task<JsonObject> GetAsync(string jobId, TimeSpan wait, CancellationToken ct)
    {
        var ended = signals.Ended(jobId);
        var stored = await store.GetAsync(Collections.Jobs, jobId, ct) ?? throw Missing(jobId);
        if (wait > TimeSpan.Zero && !IsFinal(stored.Body))
        {
            var max = TimeSpan.FromSeconds(options.Value.MaxWaitSeconds);
            try
            {
                await ended.WaitAsync(wait < max ? wait : max, ct);
            }
            catch (TimeoutException)
            {
                // Still running: answer the record as it is now.
            }
            stored = await store.GetAsync(Collections.Jobs, jobId, ct) ?? throw Missing(jobId);
        }
        return await PresentAsync(stored.Body, ct);
    }

    // Where a job document holds what its policy's template may mark secret (Present masks it).
    private static readonly IReadOnlyList<string> JobSecretPaths = ["policy_rule_parameters"];

    public async Task<IReadOnlyList<JsonObject>> QueryAsync(DocumentQuery query, CancellationToken ct)
    {
        // Parameters are masked by their policy's template: a query that reaches them runs on the masked jobs.
        var policies = new Dictionary<string, PolicyRule?>(StringComparer.Ordinal);
        return await RedactedQuery.RunAsync(store, Collections.Jobs, query, JobSecretPaths, async (doc, token) =>
        {
            var uri = doc.Body["policy_rule_uri"]?.GetValue<string>() ?? "";
            if (!policies.TryGetValue(uri, out var policy)) policies[uri] = policy = await TryPolicyAsync(uri, token);
            return Present(doc.Body, policy);
        }, ct);
    }

    /// <summary>DELETE /jobs/{id}: records the job as cancelled by <paramref name="by"/> (unless it already ended) and stops it.</summary>
    public Task<JsonObject> CancelAsync(string jobId, CallerIdentity by, CancellationToken ct) => CancelAsync(jobId, "cancelled by request", by, null, ct);

    /// <summary>
    /// Records <paramref name="jobId"/> cancelled with <paramref name="reason"/> as its error (unless it already ended) and
    /// stops it with the launcher of <paramref name="executor"/> (null: the job's executor as stored, which a deleted one no
    /// longer is). The cancel is the job's decision record, as a run's end is.
    /// </summary>
    private async Task<JsonObject> CancelAsync(string jobId, string reason, CallerIdentity by, PolicyExecutor? executor, CancellationToken ct)
    {
        var before = await store.GetAsync(Collections.Jobs, jobId, ct) ?? throw Missing(jobId);
        if (IsFinal(before.Body)) return await PresentAsync(before.Body, ct);
        var cancelled = false; // whether this call ended the job (a cancel racing another end records nothing)
        var job = await TransitionAsync(jobId, j =>
        {
            cancelled = !j.IsFinished;
            return !cancelled ? null : j with { Status = JobStatus.Cancelled, Error = reason, FinishedAt = Now() };
        }, ct);
        if (cancelled)
        {
            try
            {
                await LauncherFor(executor ?? await ExecutorAsync(job.ExecutorId, ct)).CancelAsync(jobId, ct);
            }
            catch (PolicyGridException e)
            {
                // The record says cancelled either way; a launcher that could not be reached is logged for the operator.
                logger.LogWarning("job {JobId}: cancelled, but stopping it failed: {Error}", jobId, e.Message);
            }
            logger.LogInformation("job {JobId}: cancelled by {Caller} ({Reason})", jobId, by.Name, reason);
            if (decisions is not null) await decisions.RecordAsync(CancelDecision(job, by));
            signals.Signal(jobId);
        }
        return await PresentAsync(job.ToJson(), ct);
    }

    /// <summary>
    /// A cancelled job's decision: its run ended without a result, stopped by <paramref name="by"/> (the caller; the job it
    /// concerns is its <c>context_key</c>, <c>job:&lt;id&gt;</c>), <c>error_code</c> <c>cancelled</c> with status 499 (a
    /// request its client cancelled, as gRPC's CANCELLED maps to HTTP), from when it started (or was cancelled, never
    /// started) for as long as it ran. Which bundle its process loaded, if any, the server cannot tell.
    /// </summary>
    private Decision CancelDecision(Job job, CallerIdentity by)
    {
        var now = clock.GetUtcNow();
        var started = DateTimeOffset.TryParse(job.StartedAt, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var s) ? s : now;
        return new Decision("execute", job.PolicyRuleUri, "", by.Name, $"job:{job.JobId}", CanonicalJson.Sha256(job.Inputs.DeepClone()),
            Decision.OutcomeError, JobStatus.Cancelled, 499, Math.Max(0, (now - started).TotalMilliseconds), started);
    }

    /// <summary>The ids of the jobs still pending or running on executor <paramref name="executorId"/>, the oldest first.</summary>
    public async Task<IReadOnlyList<string>> OpenJobsOnAsync(string executorId, CancellationToken ct)
    {
        var filter = FilterParser.Parse(new JsonObject
        {
            ["executor_id"] = executorId,
            ["status"] = new JsonObject { ["$in"] = new JsonArray(JobStatus.Pending, JobStatus.Running) },
        });
        var open = new List<(string CreatedAt, string Id)>();
        await foreach (var doc in store.QueryEveryAsync(Collections.Jobs, filter, ct))
            open.Add((doc.Body["created_at"]?.GetValue<string>() ?? "", doc.Id));
        return [.. open.OrderBy(j => j.CreatedAt, StringComparer.Ordinal).ThenBy(j => j.Id, StringComparer.Ordinal).Select(j => j.Id)];
    }

    /// <summary>
    /// Cancels every job still open on <paramref name="executor"/> for <paramref name="by"/>, each recorded <c>cancelled</c> with
    /// <paramref name="reason"/>, and stops it with that executor's launcher (which works once the executor's record is gone).
    /// Answers the ids it cancelled.
    /// </summary>
    public async Task<IReadOnlyList<string>> CancelOpenJobsAsync(PolicyExecutor executor, string reason, CallerIdentity by, CancellationToken ct)
    {
        var open = await OpenJobsOnAsync(executor.ExecutorId, ct);
        foreach (var jobId in open) await CancelAsync(jobId, reason, by, executor, ct);
        return open;
    }

    /// <summary>POST /jobs/{id}/result: a remote runner reports how its job ended, with the job's token.</summary>
    public async Task<JsonObject> ReportAsync(string jobId, string token, JsonObject body, CancellationToken ct)
    {
        if (token.Length == 0 || !await tokens.VerifyAsync(jobId, token, ct))
            throw Problems.Unauthorized($"the result token for job '{jobId}' is missing or wrong");
        var status = body["status"] is JsonValue s && s.TryGetValue<string>(out var text) ? text : "";
        if (status is not (JobStatus.Succeeded or JobStatus.Failed or JobStatus.TimedOut))
            throw Problems.Validation("status", "must be \"succeeded\", \"failed\" or \"timed_out\"");
        var error = body["error"] is JsonValue e && e.TryGetValue<string>(out var message) ? message : "";
        var result = body["result"]?.DeepClone() ?? new JsonObject();
        if (body["decision"] is { } reported && reported is not JsonObject)
            throw Problems.Validation("decision", $"must be an object (the decision the run recorded), not a JSON {Envelope.JsonBody.Describe(reported)}");
        var ended = false; // whether this report is the job's end (the first one stands; a repeat records nothing)
        var job = await TransitionAsync(jobId, j =>
        {
            ended = !j.IsFinished;
            return !ended ? null : j with
            {
                Status = status, Result = result, Error = error, FinishedAt = Now(),
                StartedAt = j.StartedAt.Length > 0 ? j.StartedAt : Now(),
            };
        }, ct);
        logger.LogInformation("job {JobId}: runner reported {Status}", jobId, status);
        if (ended && decisions is not null) await decisions.RecordAsync(RunnerDecision(job, body["decision"] as JsonObject));
        signals.Signal(jobId);
        return await PresentAsync(job.ToJson(), ct);
    }

    /// <summary>
    /// The decision of a job whose runner had no access to this store (a Kubernetes pod): what it recorded of its run
    /// (bundle, input hash, outcome, status, duration, time), sent with its result, under the job's policy and the caller
    /// and context key every job's run has (<c>job:&lt;id&gt;</c>). A runner that sent none (an older image) gets one
    /// made from the job's record: its input's hash, its end's outcome, no bundle.
    /// </summary>
    private Decision RunnerDecision(Job job, JsonObject? reported)
    {
        var succeeded = job.Status == JobStatus.Succeeded;
        var (status, code) = job.Status switch
        {
            JobStatus.Succeeded => (200, ""),
            JobStatus.TimedOut => (504, ErrorCodes.PolicyTimeout),
            _ => (500, "internal"),
        };
        var started = DateTimeOffset.TryParse(job.StartedAt, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var s) ? s : clock.GetUtcNow();
        var caller = $"job:{job.JobId}";
        return new Decision("execute", job.PolicyRuleUri, Text(reported, "bundle_sha256") ?? "", caller, caller,
            Text(reported, "input_sha256") ?? CanonicalJson.Sha256(job.Inputs.DeepClone()),
            Text(reported, "outcome") ?? (succeeded ? Decision.OutcomeResult : Decision.OutcomeError),
            Text(reported, "error_code") ?? code,
            reported?["status"] is JsonValue v && v.TryGetValue<int>(out var given) ? given : status,
            reported?["duration_ms"] is JsonValue d && JsonValues.TryDouble(d, out var ms) && ms >= 0 ? ms : Math.Max(0, (clock.GetUtcNow() - started).TotalMilliseconds),
            Text(reported, "at") is { } at && DateTimeOffset.TryParse(at, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var when) ? when : started);

        static string? Text(JsonObject? o, string name) => o?[name] is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;
    }

    /// <summary>At start: follows every job a previous run of this server left pending or running, or records why it ended.</summary>
    public async Task ReconcileAsync(DateTimeOffset startedAt, CancellationToken ct)
    {
        var before = Timestamps.Format(startedAt);
        var filter = FilterParser.Parse(new JsonObject { ["status"] = new JsonObject { ["$in"] = new JsonArray(JobStatus.Pending, JobStatus.Running) } });
        // Every open job, however many: the walk stays exact while the jobs it has passed finish (below, or followed).
        await foreach (var doc in store.QueryEveryAsync(Collections.Jobs, filter, ct))
        {
            var job = Job.FromJson(doc.Body);
            // Jobs submitted since this server started are followed already.
            if (runs.ContainsKey(job.JobId) || string.CompareOrdinal(job.CreatedAt, before) >= 0) continue;
            IJobLauncher launcher;
            try
            {
                launcher = IsThisNode(job.ExecutorId) ? transports.NodeLauncher() : LauncherFor(await ExecutorAsync(job.ExecutorId, ct));
            }
            catch (PolicyGridException e)
            {
                await FinishAsync(job.JobId, JobOutcome.Failed($"server restarted and the job's executor cannot be reached: {e.Message}"));
                continue;
            }
            logger.LogInformation("job {JobId}: was {Status} when the server stopped; re-attaching", job.JobId, job.Status);
            Follow(job.JobId, launcher, DeadlineOf(job), async token => await launcher.ReattachAsync(job.JobId, token));
        }
    }

    private bool IsThisNode(string executorId) => options.Value.NodeExecutorId.Length > 0 && executorId == options.Value.NodeExecutorId;

    // An executor that is this very server runs its jobs itself rather than calling itself over the network.
    private IJobLauncher LauncherFor(PolicyExecutor executor) => IsThisNode(executor.ExecutorId) ? transports.NodeLauncher() : transports.For(executor);

    private void Start(Job job, IJobLauncher launcher, PolicyRule policy)
    {
        Follow(job.JobId, launcher, clock.GetUtcNow() + TimeSpan.FromSeconds(job.TimeoutSeconds + options.Value.DeadlineGraceSeconds), async token =>
        {
            var resultToken = await tokens.IssueAsync(job.JobId, token);
            var running = await TransitionAsync(job.JobId, j => j.Status == JobStatus.Pending ? j with { Status = JobStatus.Running, StartedAt = Now() } : null, token);
            if (running.IsFinished) return null; // cancelled before it started
            return await launcher.RunAsync(Launch(job, policy, resultToken), token);
        });
    }

    // Runs one job to its end in the background. Shutdown stops following (the job keeps running and is
    // re-attached at the next start); anything else that goes wrong ends the job as failed, with the reason.
    // The board keeps its own backstop deadline (timeout + DeadlineGraceSeconds): a job whose launcher
    // never answers (a node that vanished) is stopped if possible and recorded timed out, never left running.
    private void Follow(string jobId, IJobLauncher launcher, DateTimeOffset deadlineAt, Func<CancellationToken, Task<JobOutcome?>> run)
    {
        var stopping = lifetime.ApplicationStopping;
        if (launcher is RemoteJobLauncher) forwarded[jobId] = 0;
        var task = Task.Run(async () =>
        {
            using var following = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            JobOutcome? outcome;
            try
            {
                var running = run(following.Token);
                var left = deadlineAt - clock.GetUtcNow();
                using var backstop = new CancellationTokenSource();
                var overdue = Task.Delay(left > TimeSpan.Zero ? left : TimeSpan.Zero, backstop.Token);
                if (await Task.WhenAny(running, overdue) == running)
                {
                    await backstop.CancelAsync();
                    outcome = await running;
                }
                else
                {
                    await following.CancelAsync();
                    logger.LogWarning("job {JobId}: no end reported by its deadline; stopping it", jobId);
                    try { await launcher.CancelAsync(jobId, CancellationToken.None); }
                    catch (Exception e) when (e is not OperationCanceledException) { logger.LogWarning("job {JobId}: stopping it failed: {Error}", jobId, e.Message); }
                    outcome = JobOutcome.TimedOut("the job did not end within its timeout and its launcher reported nothing; it was stopped");
                    _ = running.ContinueWith(t => _ = t.Exception, TaskScheduler.Default); // observed: its end no longer matters
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                logger.LogWarning(e, "job {JobId}: its launcher failed", jobId);
                // A disk's refusal says what it is, without the server's paths (the log has the whole exception).
                outcome = JobOutcome.Failed(e is PolicyGridException p ? p.Message
                    : DiskFailures.In(e) is { } disk ? $"the job's launcher failed: {disk.Message}" : $"the job's launcher failed: {e.Message}");
            }
            if (outcome is not null) await FinishAsync(jobId, outcome);
            else signals.Signal(jobId);
        }, CancellationToken.None);
        runs[jobId] = task;
        _ = task.ContinueWith(ended =>
        {
            if (runs.TryRemove(new KeyValuePair<string, Task>(jobId, task))) forwarded.TryRemove(jobId, out _);
        }, TaskScheduler.Default);
    }

    private DateTimeOffset DeadlineOf(Job job)
    {
        var from = DateTimeOffset.TryParse(job.StartedAt.Length > 0 ? job.StartedAt : job.CreatedAt, System.Globalization.CultureInfo.InvariantCulture,
            System.Globalization.DateTimeStyles.RoundtripKind, out var t) ? t : clock.GetUtcNow();
        return from + TimeSpan.FromSeconds(job.TimeoutSeconds + options.Value.DeadlineGraceSeconds);
    }

    /// <summary>
    /// Records how the job ended. A store that refuses the write (a full disk, a store down) does not lose it: it is
    /// tried again until it lands or the server stops (<see cref="UntilStored"/>; the next start then finds the job's
    /// process gone and records it failed). It used to be dropped: the job showed "running" for good, and nothing was logged.
    /// </summary>
    private async Task FinishAsync(string jobId, JobOutcome outcome)
    {
        try
        {
            await UntilStored.WriteAsync(() => RecordEndAsync(jobId, outcome),
                e => logger.LogError(e, "job {JobId}: could not record that it ended ({End}); trying again until it is recorded", jobId, outcome.End),
                () => logger.LogWarning("job {JobId}: its end is recorded now", jobId),
                clock, lifetime.ApplicationStopping);
        }
        catch (PolicyGridException e) when (e.Status == 404)
        {
            // The record was removed meanwhile; nothing left to update.
        }
        finally
        {
            signals.Signal(jobId);
        }
    }

    private async Task RecordEndAsync(string jobId, JobOutcome outcome)
    {
        var job = await TransitionAsync(jobId, j => j.IsFinished ? null : outcome.End switch
        {
            JobEnd.Succeeded => j with { Status = JobStatus.Succeeded, Result = outcome.Result?.DeepClone() ?? new JsonObject(), Error = "" },
            JobEnd.TimedOut => j with { Status = JobStatus.TimedOut, Error = outcome.Error },
            JobEnd.Cancelled => j with { Status = JobStatus.Cancelled, Error = outcome.Error.Length > 0 ? outcome.Error : "cancelled" },
            JobEnd.Failed => j with { Status = JobStatus.Failed, Error = outcome.Error },
            _ => j with { Status = JobStatus.Failed, Error = "the job ended without reporting a result" },
        } with { FinishedAt = Now(), StartedAt = j.StartedAt.Length > 0 ? j.StartedAt : Now() }, CancellationToken.None);
        logger.LogInformation("job {JobId}: {Status}{Error}", jobId, job.Status, job.Error.Length > 0 ? $" ({job.Error})" : "");
        await tokens.ForgetAsync(jobId, CancellationToken.None);
    }

    /// <summary>Applies <paramref name="change"/> (null = leave as is) with a revision check, retrying when another writer got there first.</summary>
    private async Task<Job> TransitionAsync(string jobId, Func<Job, Job?> change, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            var stored = await store.GetAsync(Collections.Jobs, jobId, ct) ?? throw Missing(jobId);
            var job = Job.FromJson(stored.Body);
            var next = change(job);
            if (next is null) return job;
            try
            {
                await store.ReplaceAsync(Collections.Jobs, jobId, next.ToJson(), stored.Revision, ct);
                return next;
            }
            catch (PolicyGridException e) when (e.Status == 409 && attempt < 20)
            {
            }
        }
    }

    private JobLaunch Launch(Job job, PolicyRule policy, string resultToken)
    {
        var selector = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in job.NodeSelector) selector[k] = v!.GetValue<string>();
        return new JobLaunch(job.JobId, policy.ToJson(), (JsonObject)job.PolicyRuleParameters.DeepClone(), job.Inputs.DeepClone(), selector,
            TimeSpan.FromSeconds(job.TimeoutSeconds), ResourceEstimates.Resources(policy.ResourceEstimates), resultToken);
    }

    private void CheckAgainstPolicy(Job job, PolicyRule policy)
    {
        if (policy.IsRetired) throw Problems.Retired($"policy '{policy.PolicyRuleUri}' is retired and cannot run");
        policy.EnsureRunnableKind();
        var merged = (JsonObject)policy.PolicyParameters.DeepClone();
        foreach (var (k, v) in job.PolicyRuleParameters) merged[k] = v?.DeepClone();
        var errors = new List<FieldError>();
        if (policy.PolicyParametersSchema.Count > 0) errors.AddRange(TemplateValidator.Validate(policy.PolicyParametersSchema, merged, "policy_rule_parameters"));
        // Not an object: said once, in the job's words (the schema check would say it again in its own).
        if (job.Inputs is not JsonObject) errors.Add(new FieldError("inputs", $"must be an object (it is the policy's input_data), not {JsonValues.Describe(job.Inputs)}"));
        else if (policy.PolicyInputSchema.Count > 0) errors.AddRange(TemplateValidator.Validate(policy.PolicyInputSchema, job.Inputs, "inputs"));
        if (errors.Count > 0) throw Problems.Validation(errors);
    }

    /// <summary>A job's name is a label, held to the length of every other name (policies, executors, functions).</summary>
    private static void CheckName(JsonObject body)
    {
        if (body["name"] is JsonValue name && name.TryGetValue<string>(out var text) && text.Length > Identifiers.MaxLength)
            throw Problems.Validation("name", $"is {text.Length} characters long; at most {Identifiers.MaxLength}");
    }

    private void CheckTimeout(JsonObject body)
    {
        if (body["timeout_seconds"] is not JsonValue given || given.GetValueKind() != System.Text.Json.JsonValueKind.Number) return; // Job.FromJson names the kind
        var max = options.Value.MaxTimeoutSeconds;
        var seconds = given.GetValue<double>();
        var text = seconds.ToString(CultureInfo.InvariantCulture);
        if (seconds > max || double.IsInfinity(seconds))
            throw Problems.Validation("timeout_seconds", $"must be at most {max} seconds on this server, not {text}");
        if (!(seconds > 0))
            throw Problems.Validation("timeout_seconds", $"must be greater than 0, not {text}");
        if (TimeSpan.FromSeconds(seconds) <= TimeSpan.Zero)
            throw Problems.Validation("timeout_seconds", $"must be at least 0.0000001 seconds (one tick of the clock), not {text}");
    }

    private double Timeout(JsonObject body, PolicyRule policy)
    {
        var max = options.Value.MaxTimeoutSeconds;
        if (body["timeout_seconds"] is JsonValue given && given.TryGetValue<double>(out var seconds))
        {
            if (seconds > max) throw Problems.Validation("timeout_seconds", $"must be at most {max} seconds on this server, not {seconds}");
            return seconds;
        }
        return Math.Min(ResourceEstimates.TimeoutSeconds(policy.ResourceEstimates) ?? options.Value.DefaultTimeoutSeconds, max);
    }

    private async Task<PolicyRule> PolicyAsync(string uri, CancellationToken ct) =>
        await TryPolicyAsync(uri, ct) ?? throw Problems.UnknownPolicy(uri);

    private async Task<PolicyRule?> TryPolicyAsync(string uri, CancellationToken ct)
    {
        var stored = uri.Length == 0 ? null : await store.GetAsync(Collections.Policies, uri, ct);
        return stored is null ? null : PolicyRule.FromJson(stored.Body);
    }

    /// <summary>
    /// The executor a job runs on, whatever its status: draining refuses new work, not the jobs it already runs (a cancel
    /// of one left its process running, and a restart recorded each of them failed while its process ran on).
    /// </summary>
    private async Task<PolicyExecutor> ExecutorAsync(string executorId, CancellationToken ct)
    {
        var stored = await store.GetAsync(Collections.Executors, executorId, ct)
            ?? throw Problems.NotFound($"no executor '{executorId}' is registered");
        return PolicyExecutor.FromStored(stored.Body);
    }

    private async Task<PolicyExecutor> ExecutorForNewWorkAsync(string executorId, CancellationToken ct)
    {
        var executor = await ExecutorAsync(executorId, ct);
        if (executor.ExecutorStatus == ExecutorStatus.Draining)
            throw new PolicyGridException(503, ErrorCodes.BackendUnavailable, $"executor '{executorId}' is draining and takes no new work") { RetryAfterSeconds = 30 };
        return executor;
    }

    private async Task<JsonObject> PresentAsync(JsonObject body, CancellationToken ct) =>
        Present(body, await TryPolicyAsync(body["policy_rule_uri"]?.GetValue<string>() ?? "", ct));

    // Parameters marked secret in the policy's template are answered as "***" in every read.
    private static JsonObject Present(JsonObject body, PolicyRule? policy)
    {
        var copy = (JsonObject)body.DeepClone();
        if (policy is not null && TemplateSecrets.HasSecrets(policy.PolicyParametersSchema) && copy["policy_rule_parameters"] is JsonObject parameters)
            copy["policy_rule_parameters"] = TemplateSecrets.Redact(policy.PolicyParametersSchema, parameters);
        return copy;
    }

    private static bool IsFinal(JsonObject body) => JobStatus.IsFinal(body["status"]?.GetValue<string>() ?? "");

    // Job ids are random, so a pruned job cannot be told from one never submitted without keeping a trace of each:
    // the answer says both, and the limits, when retention is on.
    private PolicyGridException Missing(string jobId) => Problems.NotFound($"no job '{jobId}'{JobRetention.Explain(options.Value)}");

    private string Now() => Timestamps.Format(clock.GetUtcNow());
}
