using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Documents;
using PolicyGrid.Api.Functions;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Core.Templates;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Graphs;

/// <summary>
/// Type 5 graphs: stores Graph documents (their shape checked by Core's GraphPlan on every write) and executes them
/// through the composition's <see cref="IGraphRunner"/>, after checking the input and that every node is deployed.
/// Asynchronous runs are recorded in <see cref="Collections.GraphExecutions"/>, so a finished result outlives a restart.
/// </summary>
public sealed class GraphRegistry(
    IDocumentStore store,
    IGraphRunner runner,
    FunctionRegistry functions,
    IOptions<GraphExecutionOptions> options,
    IOptions<PolicyRuntimeOptions> runtime,
    IHostApplicationLifetime lifetime,
    TimeProvider clock,
    ILogger<GraphRegistry> logger,
    DecisionLog? decisions = null) : IHostedService
{
    // Executions this process is running; a stored "running" one not in here was cut off by a restart.
    private readonly ConcurrentDictionary<string, RunningExecution> _running = new(StringComparer.Ordinal);
    private readonly AsyncRunQuota _asyncRuns = new(options);

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Waits, within the host's shutdown timeout, for the asynchronous runs the stop cancelled to store how they ended. Nothing
    /// waited before: the store could close first, and the next read recorded the run "the server restarted before this
    /// execution finished" instead of what it was.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken) =>
        await Task.WhenAll(_running.Values.Select(r => r.Finished)).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);

    /// <summary>Nodes a 404 or a warning names before it says how many more there are: the rest would only make it longer.</summary>
    public const int NamedNodes = 20;

    public async Task<StoredDocument> CreateAsync(JsonObject body, CancellationToken ct)
    {
        EnsureNodeLimit(body);
        var graph = Graph.FromJson(body);
        GraphRunSettings.Ensure(graph.GraphMetadata);
        if (await store.GetAsync(Collections.Graphs, graph.GraphUri, ct) is not null)
            throw Problems.Conflict($"graph '{graph.GraphUri}' already exists; update it with PUT /graphs/{graph.GraphUri}, or register a new version or release_tag");
        return await store.CreateAsync(Collections.Graphs, graph.GraphUri, graph.ToJson(), ct);
    }

    public async Task<StoredDocument> GetAsync(string uri, CancellationToken ct) =>
        await store.GetAsync(Collections.Graphs, Canonical(uri), ct) ?? throw Missing(uri);

    public Task<StoredDocument> UpdateAsync(string uri, JsonObject update, IfMatchCondition? ifMatch, CancellationToken ct) =>
        OptimisticUpdate.ApplyAsync(store, Collections.Graphs, Canonical(uri), ifMatch,
            current =>
            {
                var updated = UpdateEngine.Apply(current.Body, update, Graph.IdentityFields);
                EnsureNodeLimit(updated);
                var graph = Graph.FromJson(updated);
                GraphRunSettings.Ensure(graph.GraphMetadata);
                var kept = graph.ToJson();
                UpdateEngine.EnsureFieldsKept(update, kept);
                return kept;
            },
            () => Missing(uri),
            (asked, now) => asked.Mismatch($"'{Canonical(uri)}'", now),
            ct);

    /// <summary>
    /// Refuses a graph of more than <see cref="GraphExecutionOptions.MaxNodes"/> nodes before its shape is checked: that check,
    /// and every answer that names nodes, grows with the graph. A graph stored before the limit was lowered still runs.
    /// </summary>
    private void EnsureNodeLimit(JsonObject graph)
    {
        var max = options.Value.MaxNodes;
        if (graph["graph_function_ids"] is JsonArray ids && ids.Count > max)
            throw Problems.Validation("graph_function_ids",
                $"has {ids.Count} nodes, more than the {max} a graph may have ({GraphExecutionOptions.Section}:MaxNodes); split it into smaller graphs, or raise the setting");
        // Each key names a node, so more keys than that can only be unknown nodes, one error each in the answer.
        if (graph["graph_connection_data"] is JsonObject connections && connections.Count > max)
            throw Problems.Validation("graph_connection_data",
                $"has {connections.Count} entries, more than the {max} nodes a graph may have ({GraphExecutionOptions.Section}:MaxNodes)");
    }

    public async Task<StoredDocument> DeleteAsync(string uri, IfMatchCondition? ifMatch, CancellationToken ct)
    {
        var current = await GetAsync(uri, ct);
        if (ifMatch is not null && !ifMatch.Matches(current.Revision)) throw ifMatch.Mismatch($"'{current.Id}'", current.Revision);
        return await store.DeleteAsync(Collections.Graphs, current.Id, current.Revision, ct) ?? throw Missing(uri);
    }

    public Task<IReadOnlyList<StoredDocument>> QueryAsync(DocumentQuery query, CancellationToken ct) =>
        store.QueryAsync(Collections.Graphs, query, ct);

    public async Task<string> DiagramAsync(string uri, CancellationToken ct)
    {
        var graph = Graph.FromJson((await GetAsync(uri, ct)).Body);
        return GraphDiagram.ToMermaid(graph.Plan(), graph.GraphUri);
    }

    /// <summary>Checks the request, the input and every node, then runs the graph and answers the sink's output (and the trace when asked).</summary>
    public Task<JsonNode?> ExecuteAsync(JsonObject body, CancellationToken ct) => ExecuteAsync(body, CallerIdentity.Anonymous, null, null, ct);

    /// <summary>
    /// <see cref="ExecuteAsync(JsonObject, CancellationToken)"/> for <paramref name="caller"/>: each node's function call is
    /// recorded in the decision log with that caller, the graph URI and the run's execution id (an asynchronous run's
    /// own; a synchronous run gets one too, told to <paramref name="started"/> before it runs). <paramref name="deprecated"/>
    /// is called before the run when any node's policy is deprecated (it runs; the API answers a <c>Deprecation</c> header).
    /// </summary>
    public async Task<JsonNode?> ExecuteAsync(JsonObject body, CallerIdentity caller, Action<string>? started, Action? deprecated, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(caller);
        var run = await PrepareAuditedAsync(body, caller, ct);
        var id = Guid.NewGuid().ToString("N");
        run = run with { Options = run.Options with { Origin = new FunctionCallOrigin(caller.Name, run.GraphUri, id) } };
        if (run.Deprecated) deprecated?.Invoke();
        if (run.Async) return new JsonObject { ["execution_id"] = await StartAsync(id, run, ct) };
        started?.Invoke(id);
        var result = await RunAsync(run, ct);
        return Answer(result, run.Options.Trace);
    }

    /// <summary>
    /// <see cref="PrepareAsync"/>, and when it refuses the run (400, 404, 410: no node ran, so no node's record tells of
    /// it) one <see cref="Decision.KindGraphRun"/> record with the graph, the caller and why. A run that starts is not
    /// recorded here: each node's run is its record.
    /// </summary>
    private Task<GraphRun> PrepareAuditedAsync(JsonObject body, CallerIdentity caller, CancellationToken ct)
    {
        if (decisions is null) return PrepareAsync(body, caller, ct);
        var asked = body["graph_uri"] is JsonValue u && u.TryGetValue<string>(out var text) ? Canonical(text) : "";
        var audit = new AuditTrail(Decision.KindGraphRun, "", caller, "", CanonicalJson.Sha256(body["input_data"]?.DeepClone())) { GraphId = asked };
        return audit.RunAsync(decisions, async () =>
        {
            var run = await PrepareAsync(body, caller, ct);
            audit.RecordedElsewhere = true; // it runs: its nodes' records are its trail
            return run;
        });
    }

    /// <summary>Runs the graph and tells what its outcome says of the nodes' executors (see <see cref="FunctionRegistry.NoteGraphRunAsync"/>).</summary>
    private async Task<GraphRunResult> RunAsync(GraphRun run, CancellationToken ct)
    {
        GraphRunResult result;
        try
        {
            result = await runner.RunAsync(run.Plan, run.Input, run.Options, ct);
        }
        catch (PolicyGridException e)
        {
            await functions.NoteGraphRunAsync(run.Plan.Nodes, e);
            throw;
        }
        await functions.NoteGraphRunAsync(run.Plan.Nodes, null);
        CheckOutput(run, result.Result);
        return result;
    }

    /// <summary>
    /// The sink's output against the graph's graph_output_schema, as a Type 2 answer is checked against its
    /// policy_output_schema and by the same setting (<see cref="ExecutionOptions.OutputSchemaMode"/>): Warn logs it, Enforce
    /// fails the run 422. Here, after the runner, so both runners' results and sync and async runs alike are checked.
    /// </summary>
    private void CheckOutput(GraphRun run, JsonNode? result)
    {
        var mode = runtime.Value.Execution.OutputSchemaMode;
        if (mode == OutputSchemaMode.Off || run.OutputSchema.Count == 0) return;
        var errors = TemplateValidator.Validate(run.OutputSchema, result, "result");
        if (errors.Count == 0) return;
        var message = $"the result of graph {run.GraphUri} does not match its graph_output_schema: {string.Join("; ", errors)}";
        if (mode == OutputSchemaMode.Enforce) throw Problems.PolicyError(message);
        logger.LogWarning("graph execution {Execution}: {Message}", run.Options.Origin?.ExecutionId, message);
    }

    public async Task<JsonObject> ExecutionAsync(string id, CancellationToken ct)
    {
        var stored = await ReadExecutionAsync(id, ct);
        if (IsRunning(stored) && !_running.ContainsKey(id))
        {
            // Not running here: either it finished between the read and this check (FinishAsync stores the outcome
            // before it leaves _running, so a second read has it), or an earlier process started it and stopped
            // before it finished, and it never will now.
            stored = await ReadExecutionAsync(id, ct);
            if (IsRunning(stored))
            {
                var cut = (JsonObject)stored.Body.DeepClone();
                cut["status"] = ExecutionStatus.Failed;
                cut["error"] = "the server restarted before this execution finished; run the graph again";
                cut["error_code"] = ErrorCodes.BackendUnavailable;
                try { stored = await store.ReplaceAsync(Collections.GraphExecutions, id, cut, stored.Revision, ct); }
                catch (PolicyGridException e) when (e.Status == 409) { stored = await ReadExecutionAsync(id, ct); } // someone recorded it meanwhile
            }
        }
        return (JsonObject)stored.Body.DeepClone();
    }

    /// <summary>
    /// DELETE /graph/executions/{id}: stops a running asynchronous execution as its deadline would (no further node starts,
    /// node calls under way are cancelled; on Dapr the runner hangs up and the graphs app terminates the workflow
    /// instance) and records it <see cref="ExecutionStatus.Cancelled"/>, naming <paramref name="caller"/>. Answers the
    /// record once that is stored; an execution that already ended is answered unchanged, as a job's cancel is.
    /// </summary>
    public async Task<JsonObject> CancelAsync(string id, CallerIdentity caller, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(caller);
        var stored = await ReadExecutionAsync(id, ct);
        if (!IsRunning(stored)) return (JsonObject)stored.Body.DeepClone();
        // Not running here: ended meanwhile, or cut off by a restart; the read says which, and records the latter.
        if (!_running.TryGetValue(id, out var running)) return await ExecutionAsync(id, ct);
        running.Cancel(caller.Name);
        // The run stops at once (its token); what is awaited is its record being stored, which the answer shows.
        await running.Finished.WaitAsync(ct);
        return await ExecutionAsync(id, ct);
    }

    private async Task<StoredDocument> ReadExecutionAsync(string id, CancellationToken ct) =>
        await store.GetAsync(Collections.GraphExecutions, id, ct) ?? throw Problems.NotFound($"no graph execution '{id}'");

    private static bool IsRunning(StoredDocument execution) => execution.Body["status"]?.GetValue<string>() == ExecutionStatus.Running;

    /// <summary>
    /// Checks the request, the graph's input and every node; an asynchronous run also takes one of the caller's and the
    /// server's slots (<see cref="AsyncRunQuota"/>), last, so that a request that could never run is not told to retry.
    /// </summary>
    private async Task<GraphRun> PrepareAsync(JsonObject body, CallerIdentity caller, CancellationToken ct)
    {
        var errors = new List<FieldError>();
        var uri = body["graph_uri"] is JsonValue u && u.TryGetValue<string>(out var text) && text.Length > 0 ? text : null;
        if (uri is null) errors.Add(new("graph_uri", "is required and must be a graph URI string (name:version-release_tag)"));
        var trace = Flag(body, "trace", errors);
        var async = Flag(body, "async", errors);
        double? timeout = null;
        if (body["timeout_seconds"] is { } t)
        {
            // As a double, as jobs and execute_policy read it: 1e30 is a number (held to MaxDeadlineSeconds), and a
            // value under one tick of the clock would be a deadline of 0 s, a 504 for what is the caller's mistake.
            var shown = t.ToJsonString();
            if (!JsonValues.TryDouble(t, out var seconds)) errors.Add(new("timeout_seconds", $"must be a number of seconds, not a JSON {Envelope.JsonBody.Describe(t)}"));
            else if (!(seconds > 0)) errors.Add(new("timeout_seconds", $"must be greater than 0, not {shown}"));
            else if (seconds < TimeSpan.FromTicks(1).TotalSeconds) errors.Add(new("timeout_seconds", $"must be at least 0.0000001 seconds (one tick of the clock), not {shown}"));
            else timeout = seconds;
        }
        if (errors.Count > 0) throw Problems.Validation(errors);

        var graph = Graph.FromJson((await GetAsync(uri!, ct)).Body);
        var input = body["input_data"]?.DeepClone();
        var inputErrors = TemplateValidator.Validate(graph.GraphInputSchema, input, "input_data");
        if (inputErrors.Count > 0) throw Problems.Validation(inputErrors);

        var missing = await UndeployedAsync(graph, ct);
        if (missing.Count > 0)
            throw Problems.NotFound($"graph '{graph.GraphUri}' cannot run: {NoFunctionFor(missing)}");
        var deprecated = false;
        foreach (var node in graph.GraphFunctionIds)
        {
            try { deprecated |= await functions.EnsureRunnableAsync(node, ct); }
            catch (PolicyGridException e) when (e.Status == 410) { throw Problems.Retired($"graph '{graph.GraphUri}' cannot run: {e.Message}"); }
        }

        return new GraphRun(graph.GraphUri, graph.Plan(), input, Options(graph, timeout, trace), async, deprecated, graph.GraphOutputSchema)
        {
            AsyncSlot = async ? _asyncRuns.Admit(caller.Name) : null,
        };
    }

    /// <summary>
    /// For a graph just stored: one warning when nodes have no deployed function yet (the graph is kept, and runs once
    /// they are deployed), naming each; none otherwise.
    /// </summary>
    public async Task<IReadOnlyList<string>> UndeployedNodeWarningsAsync(JsonObject stored, CancellationToken ct)
    {
        var graph = Graph.FromJson(stored);
        var missing = await UndeployedAsync(graph, ct);
        return missing.Count == 0
            ? []
            : [$"graph '{graph.GraphUri}' is stored, but {NoFunctionFor(missing)} yet: executing it answers 404 until {(missing.Count > 1 ? "they are" : "it is")} deployed (POST /function/deployments/create/{{executor_id}})"];
    }

    private async Task<List<string>> UndeployedAsync(Graph graph, CancellationToken ct)
    {
        var missing = new List<string>();
        foreach (var node in graph.GraphFunctionIds)
            if (!await functions.IsDeployedAsync(node, ct)) missing.Add(node);
        return missing;
    }

    private static string NoFunctionFor(List<string> nodes) =>
        $"no function is deployed for node{(nodes.Count > 1 ? "s" : "")} {ShortList.Of([.. nodes.Select(m => $"'{m}'")], NamedNodes)}";

    private GraphRunOptions Options(Graph graph, double? timeout, bool trace)
    {
        var limits = options.Value;
        var seconds = timeout ?? GraphRunSettings.PositiveSeconds(graph.GraphMetadata["deadline_seconds"]) ?? limits.DefaultDeadlineSeconds;
        var deadline = Math.Min(seconds, limits.MaxDeadlineSeconds);
        NodeRetryPolicy? retry = null;
        // Read leniently: graphs stored before GraphRunSettings checked them may hold anything here. A backoff longer
        // than the run's deadline waits no longer than the deadline (and so stays within what a TimeSpan holds).
        if (graph.GraphMetadata["node_retry"] is JsonObject r && JsonValues.TryDouble(r["max_attempts"], out var attempts) && attempts >= 1)
        {
            var backoff = JsonValues.TryDouble(r["backoff_seconds"], out var b) && b >= 0 ? Math.Min(b, deadline) : 0;
            retry = new NodeRetryPolicy((int)Math.Min(attempts, GraphRunSettings.MaxAttempts), TimeSpan.FromSeconds(backoff));
        }
        return new GraphRunOptions(TimeSpan.FromSeconds(deadline), Math.Max(1, limits.MaxParallelism), retry, trace);
    }

    private async Task<string> StartAsync(string id, GraphRun run, CancellationToken ct)
    {
        var record = new JsonObject
        {
            ["execution_id"] = id,
            ["graph_uri"] = run.GraphUri,
            ["status"] = ExecutionStatus.Running,
            ["result"] = new JsonObject(),
            ["error"] = "",
            // Every field from the start, "" until the run fails: a client reading error_code of a run that succeeded (or of
            // one still going) found no such key.
            ["error_code"] = "",
            ["created_at"] = Timestamps.Format(clock.GetUtcNow()),
            ["finished_at"] = "",
        };
        try
        {
            await store.CreateAsync(Collections.GraphExecutions, id, record, ct);
        }
        catch
        {
            run.AsyncSlot?.Dispose(); // it never started
            throw;
        }
        // Runs past the request: the server's lifetime (or a DELETE), not the caller's connection, bounds it. In _running
        // before it starts, so that its own removal when it ends cannot come first and leave it there for good.
        var running = new RunningExecution(lifetime.ApplicationStopping);
        var finish = new Task<Task>(() => FinishAsync(id, record, run, running));
        running.Finished = finish.Unwrap();
        _running[id] = running;
        finish.Start(TaskScheduler.Default);
        return id;
    }

    private async Task FinishAsync(string id, JsonObject record, GraphRun run, RunningExecution running)
    {
        try
        {
            var result = await RunAsync(run, running.Token);
            record["status"] = ExecutionStatus.Succeeded;
            record["result"] = Answer(result, run.Options.Trace);
        }
        catch (Exception) when (running.CancelledBy is { } caller)
        {
            // Whatever the cancelled run threw on its way out (a node's call cut short, the runner's own cancellation),
            // it ended because it was asked to.
            record["status"] = ExecutionStatus.Cancelled;
            record["error"] = $"cancelled by {caller} (DELETE /graph/executions/{id})";
            record["error_code"] = ExecutionStatus.Cancelled;
            logger.LogInformation("graph execution {Execution} of {Graph}: cancelled by {Caller}", id, run.GraphUri, caller);
        }
        catch (PolicyGridException e)
        {
            record["status"] = ExecutionStatus.Failed;
            record["error"] = e.Message;
            record["error_code"] = e.Code;
        }
        catch (OperationCanceledException) when (lifetime.ApplicationStopping.IsCancellationRequested)
        {
            // Every stop ends the runs under way so: said once per run, without the stack trace an Error carried each time.
            logger.LogWarning("graph execution {Execution} of {Graph}: the server stopped during it; recorded failed", id, run.GraphUri);
            record["status"] = ExecutionStatus.Failed;
            record["error"] = "the server stopped during this execution";
            record["error_code"] = ErrorCodes.BackendUnavailable;
        }
        catch (Exception e)
        {
            logger.LogError(e, "graph execution {Execution} of {Graph} failed", id, run.GraphUri);
            record["status"] = ExecutionStatus.Failed;
            record["error"] = e is OperationCanceledException ? "the server stopped during this execution" : e.Message;
            record["error_code"] = e is OperationCanceledException ? ErrorCodes.BackendUnavailable : ErrorCodes.BackendError;
        }
        // Its work is done: the slot is given back before its end is stored, so that a caller who reads that end and starts
        // another run at once is not refused for the one that just ended.
        run.AsyncSlot?.Dispose();
        record["finished_at"] = Timestamps.Format(clock.GetUtcNow());
        try
        {
            // Kept in _running until the outcome is stored: a store that refuses it (a full disk) is tried again until it
            // lands, and meanwhile a read still shows the execution running. It used to be dropped, and the next read
            // recorded the execution failed "the server restarted before this execution finished", its result lost.
            await UntilStored.WriteAsync(() => store.UpsertAsync(Collections.GraphExecutions, id, record, CancellationToken.None),
                e => logger.LogError(e, "graph execution {Execution} of {Graph}: could not record how it ended ({Status}); trying again until it is recorded",
                    id, run.GraphUri, record["status"]!.GetValue<string>()),
                () => logger.LogWarning("graph execution {Execution} of {Graph}: how it ended is recorded now", id, run.GraphUri),
                clock, lifetime.ApplicationStopping);
        }
        finally
        {
            _running.TryRemove(id, out _);
            running.Dispose();
        }
    }

    /// <summary>An asynchronous execution under way in this process: what stops it, who asked to, and its end.</summary>
    private sealed class RunningExecution(CancellationToken stopping) : IDisposable
    {
        private readonly CancellationTokenSource _stop = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        private string? _cancelledBy;

        public CancellationToken Token => _stop.Token;

        /// <summary>FinishAsync: the run, then its record stored.</summary>
        public Task Finished { get; set; } = Task.CompletedTask;

        public string? CancelledBy => Volatile.Read(ref _cancelledBy);

        /// <summary>Stops the run for <paramref name="caller"/> (the first to ask is the one recorded).</summary>
        public void Cancel(string caller)
        {
            if (Interlocked.CompareExchange(ref _cancelledBy, caller, null) is not null) return;
            try { _stop.Cancel(); }
            catch (ObjectDisposedException) { } // it ended meanwhile: its record says how
        }

        public void Dispose() => _stop.Dispose();
    }

    private static JsonNode? Answer(GraphRunResult result, bool trace) => !trace
        ? result.Result?.DeepClone()
        : new JsonObject
        {
            ["result"] = result.Result?.DeepClone(),
            ["trace"] = new JsonArray([.. result.Trace.Select(t => (JsonNode)new JsonObject
            {
                ["node"] = t.Node,
                ["input"] = t.Input?.DeepClone(),
                ["output"] = t.Output?.DeepClone(),
                ["started_at"] = Timestamps.Format(t.StartedAt),
                ["duration_ms"] = Math.Round(t.DurationMs, 3),
            })]),
        };

    private static bool Flag(JsonObject body, string name, List<FieldError> errors)
    {
        var node = body[name];
        if (node is null) return false;
        if (node is JsonValue v && v.TryGetValue<bool>(out var value)) return value;
        errors.Add(new(name, "must be true or false"));
        return false;
    }

    public static string Canonical(string uri) => uri.Contains('%', StringComparison.Ordinal) ? Uri.UnescapeDataString(uri) : uri;

    private static PolicyGridException Missing(string uri) =>
        PolicyUri.TryParse(Canonical(uri), out _, out var error)
            ? Problems.NotFound($"no graph '{Canonical(uri)}' is registered")
            : Problems.NotFound($"no graph '{Canonical(uri)}' is registered (graph URIs look like name:version-release_tag; {error})");

    private sealed record GraphRun(string GraphUri, GraphPlan Plan, JsonNode? Input, GraphRunOptions Options, bool Async, bool Deprecated, JsonObject OutputSchema)
    {
        /// <summary>An asynchronous run's place in <see cref="AsyncRunQuota"/>, given back when it ends.</summary>
        public IDisposable? AsyncSlot { get; init; }
    }
}

public static class ExecutionStatus
{
    public const string Running = "running";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";
    /// <summary>Stopped by DELETE /graph/executions/{id}; also its error_code, as jobs' status word for the same end.</summary>
    public const string Cancelled = "cancelled";
}
