using System.Globalization;
using SortKey = PolicyGrid.Core.Ports.SortKey;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Cli.Jobs;

/// <summary>
/// <c>policygrid job-run</c>: the process one Type 3 job runs in.
/// <list type="bullet">
/// <item>Local (started by the embedded server): <c>job-run --data &lt;dir&gt; --job &lt;id&gt;</c> reads the job
/// from the server's SQLite store, runs the policy once on the runtime's worker pool (with its limits and
/// the job's deadline) and writes the outcome back into the same store.</item>
/// <item>Kubernetes (the runner image's entrypoint): with no <c>--job</c>, the job comes from
/// <c>POLICYGRID_JOB_SPEC</c> and the outcome is posted to <c>POLICYGRID_RESULT_URL</c> with the job's token.</item>
/// </list>
/// Exit code 0 means the outcome was recorded (whatever it was); anything else means it could not be.
/// </summary>
public static class JobRunCommand
{
    public static async Task<int> RunAsync(string[] args)
    {
        var data = Option(args, "--data");
        var jobId = Option(args, "--job");
        try
        {
            if (jobId is not null && data is not null) return await RunLocalAsync(data, jobId);
            if (Environment.GetEnvironmentVariable("POLICYGRID_JOB_SPEC") is { Length: > 0 } spec) return await RunRemoteAsync(spec);
            Tell("usage: policygrid job-run --data <dir> --job <id>   (or set POLICYGRID_JOB_SPEC, POLICYGRID_RESULT_URL and POLICYGRID_JOB_TOKEN)");
            return 2;
        }
        catch (Exception e)
        {
            // The store refusing the outcome (a full disk) has an exit code of its own, for the server's record of the job.
            var refused = new StorageFailures().Translate(e) ?? DiskFailures.In(e);
            Tell($"policygrid job-run: {refused?.Message ?? e.Message}");
            return refused is not null ? Embedded.Jobs.LocalJobLauncher.OutcomeRefusedExitCode : 1;
        }
    }

    // The job's output goes to a log file in the data directory: on a full disk writing it fails too, and that failure,
    // thrown from here, ended the process with SIGABRT, which is all its server could then say of the job.
    private static void Tell(string line)
    {
        try { Console.Error.WriteLine(line); }
        catch (IOException) { }
    }

    private static async Task<int> RunLocalAsync(string dataDirectory, string jobId)
    {
        // The job's context (under its own key, job:<id>) lives in a scratch file of this process: the
        // server caches what it reads from the data directory's context and sees only its own writes.
        var scratch = Directory.CreateTempSubdirectory("policygrid-job-").FullName;
        try
        {
            return await RunLocalAsync(dataDirectory, jobId, scratch);
        }
        finally
        {
            try { Directory.Delete(scratch, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static async Task<int> RunLocalAsync(string dataDirectory, string jobId, string scratch)
    {
        await using var services = Compose(dataDirectory, Path.Combine(scratch, "context.db"));
        var store = services.GetRequiredService<IDocumentStore>();
        var stored = await store.GetAsync(Collections.Jobs, jobId) ?? throw new InvalidOperationException($"no job '{jobId}' in {dataDirectory}");
        var job = Job.FromJson(stored.Body);
        if (job.IsFinished) return 0; // cancelled before this process got going
        // The bundle the job's worker loads from is marked used while it runs (the server's sweep sees only its own workers):
        // a job longer than the cache's KeepUnusedFor would otherwise lose its bundle's directory mid-run to a sweep.
        using var marks = new BundleCachePruning(services.GetRequiredService<BundleCache>(), services.GetRequiredService<PythonWorkerPool>(),
            TimeProvider.System, services.GetRequiredService<ILogger<BundleCachePruning>>(), removes: false);
        await marks.StartAsync(CancellationToken.None);
        JsonObject outcome;
        try
        {
            outcome = await EvaluateAsync(services, job);
        }
        finally
        {
            await marks.StopAsync(CancellationToken.None);
        }
        await RecordAsync(store, jobId, outcome);
        // Stored: no server needs to find this process again. A server that was not watching it (killed or stopped while
        // the job ran) would never remove the file, since after a restart it follows only the jobs still open.
        try { File.Delete(Embedded.Jobs.LocalJobLauncher.PidFileOf(dataDirectory, jobId)); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }

    private static async Task<int> RunRemoteAsync(string specText)
    {
        var startedAt = DateTimeOffset.UtcNow;
        var spec = JsonNode.Parse(specText) as JsonObject ?? throw new InvalidOperationException("POLICYGRID_JOB_SPEC is not a JSON object");
        var url = Environment.GetEnvironmentVariable("POLICYGRID_RESULT_URL") ?? throw new InvalidOperationException("POLICYGRID_RESULT_URL is not set");
        var token = Environment.GetEnvironmentVariable("POLICYGRID_JOB_TOKEN") ?? "";
        var policy = spec["policy"] as JsonObject ?? throw new InvalidOperationException("the job spec holds no policy");
        var job = Job.FromJson(new JsonObject
        {
            ["job_id"] = spec["job_id"]?.DeepClone(),
            ["policy_rule_uri"] = policy["policy_rule_uri"]?.DeepClone(),
            ["policy_rule_parameters"] = spec["parameters"]?.DeepClone(),
            ["inputs"] = spec["inputs"]?.DeepClone(),
            ["timeout_seconds"] = spec["timeout_seconds"]?.DeepClone(),
        });
        // The pod has no PolicyGrid store: a private one in its scratch space holds just this policy.
        var scratch = Path.Combine(Environment.GetEnvironmentVariable("POLICYGRID_DATA") ?? Path.GetTempPath(), "policygrid-job");
        await using var services = Compose(scratch);
        await services.GetRequiredService<IDocumentStore>().UpsertAsync(Collections.Policies, job.PolicyRuleUri, PolicyRule.FromJson(policy).ToJson());
        var outcome = await EvaluateAsync(services, job);
        // The decision this run recorded went to the private store, which goes with the pod: it travels with the outcome,
        // and the server that stores the outcome records it in the decision log.
        if (await RecordedDecisionAsync(services, job.JobId) is { } decision) outcome["decision"] = decision;

        using var handler = new SocketsHttpHandler();
        var delivery = new JobResultDelivery(handler, TimeProvider.System, Tell);
        return await delivery.DeliverAsync(new Uri(url), token, outcome, PodDeadline(startedAt, job.TimeoutSeconds), CancellationToken.None) ? 0 : 1;
    }

    /// <summary>
    /// When Kubernetes stops this pod: what the node set in <c>POLICYGRID_JOB_DEADLINE</c>, or, from a node that sets none
    /// (older than this runner), the job's timeout plus the default start-up allowance (120 s) from this process's start.
    /// </summary>
    private static DateTimeOffset PodDeadline(DateTimeOffset startedAt, double timeoutSeconds) =>
        DateTimeOffset.TryParse(Environment.GetEnvironmentVariable(Kubernetes.JobManifest.DeadlineVariable), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var at)
            ? at
            : startedAt + TimeSpan.FromSeconds(timeoutSeconds + 120);

    /// <summary>The newest decision the run of job <paramref name="jobId"/> recorded in this process's store (none when nothing ran).</summary>
    private static async Task<JsonObject?> RecordedDecisionAsync(IServiceProvider services, string jobId)
    {
        await services.GetRequiredService<DecisionLog>().FlushAsync();
        var filter = FilterParser.Parse(new JsonObject { ["caller"] = $"job:{jobId}" });
        var found = await services.GetRequiredService<IDocumentStore>().QueryAsync(Collections.Decisions,
            new DocumentQuery(filter, [new SortKey("at", SortDirection.Desc)], 0, 1));
        return found.Count == 0 ? null : (JsonObject)found[0].Body.DeepClone();
    }

    /// <summary>The embedded stores on <paramref name="dataDirectory"/> and the runtime, sized for one job.</summary>
    private static ServiceProvider Compose(string dataDirectory, string? contextDatabase = null)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?>
            {
                // One job, one worker; the job's own timeout is the deadline, up to a day.
                [$"{PolicyRuntimeOptions.Section}:Pool:Workers"] = "1",
                [$"{PolicyRuntimeOptions.Section}:Execution:MaxTimeout"] = "1.00:00:00",
            })
            .AddEnvironmentVariables()
            .Build();
        var services = new ServiceCollection();
        services.AddLogging(l => l.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning));
        services.AddSingleton<IConfiguration>(configuration);
        services.AddEmbeddedStorage(dataDirectory);
        if (contextDatabase is not null)
            services.AddSingleton<IContextStore>(new SqliteContextStore(new SqliteDatabase(contextDatabase)));
        services.AddPolicyRuntime(configuration);
        return services.BuildServiceProvider();
    }

    /// <summary>Runs the job's policy once and answers the outcome as the job record's fields.</summary>
    private static async Task<JsonObject> EvaluateAsync(IServiceProvider services, Job job)
    {
        var executor = services.GetRequiredService<IPolicyExecutor>();
        try
        {
            var inputs = job.Inputs as JsonObject ?? throw Problems.Validation("inputs", "must be an object (the policy's input_data)");
            var request = new ExecutionRequest(job.PolicyRuleUri, inputs, job.PolicyRuleParameters, null, $"job:{job.JobId}", job.TimeoutSeconds);
            var result = await executor.ExecuteAsync(request, new CallerIdentity($"job:{job.JobId}"));
            return new JsonObject { ["status"] = JobStatus.Succeeded, ["result"] = result.Output.DeepClone(), ["error"] = "" };
        }
        catch (PolicyGridException e) when (e.Code == ErrorCodes.PolicyTimeout)
        {
            return new JsonObject { ["status"] = JobStatus.TimedOut, ["result"] = new JsonObject(), ["error"] = e.Message };
        }
        catch (PolicyGridException e)
        {
            return new JsonObject { ["status"] = JobStatus.Failed, ["result"] = new JsonObject(), ["error"] = $"{e.Code}: {e.Message}" };
        }
    }

    // Revision-checked: if the server recorded an end first (cancel, deadline), that one stands.
    private static async Task RecordAsync(IDocumentStore store, string jobId, JsonObject outcome)
    {
        for (var attempt = 0; attempt < 20; attempt++)
        {
            var stored = await store.GetAsync(Collections.Jobs, jobId) ?? throw new InvalidOperationException("the job record disappeared");
            var job = Job.FromJson(stored.Body);
            if (job.IsFinished) return;
            var finished = job with
            {
                Status = outcome["status"]!.GetValue<string>(),
                Result = outcome["result"]!.DeepClone(),
                Error = outcome["error"]!.GetValue<string>(),
                FinishedAt = Timestamps.Format(DateTimeOffset.UtcNow),
            };
            try
            {
                await store.ReplaceAsync(Collections.Jobs, jobId, finished.ToJson(), stored.Revision);
                return;
            }
            catch (PolicyGridException e) when (e.Status == 409)
            {
            }
        }
    }

    private static string? Option(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
