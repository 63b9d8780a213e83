using System.Text.Json;
using System.Text.Json.Nodes;
using Dapr.Workflow;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// The graphs app's way in (<c>POST /run_graph</c>, <see cref="GraphWorkflowRuns"/>) with the workflow engine as a
/// double: what the registry sends is what gets scheduled, what the workflow answers is what the registry reads,
/// and a run that fails, overruns or is badly asked for gets the contract's error.
/// </summary>
public sealed class RunGraphEndpointTests : IAsyncLifetime
{
    private static readonly GraphPlan Diamond = GraphPlan.Build(["A", "B", "C", "D"],
        new Dictionary<string, IReadOnlyList<string>> { ["A"] = ["B", "C"], ["B"] = ["D"], ["C"] = ["D"] });

    private readonly string _registryData = Directory.CreateTempSubdirectory("pg-run-graph-").FullName;
    private ServiceProvider _registry = null!;

    public ValueTask InitializeAsync()
    {
        // The registry's side reads each node's replica count from its document store.
        _registry = new ServiceCollection().AddEmbeddedStorage(_registryData).BuildServiceProvider();
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _registry.DisposeAsync();
        Directory.Delete(_registryData, recursive: true);
    }

    private DaprGraphRunner RegistryRunner(GraphsAppHost app) => new(app.Sidecar(), _registry.GetRequiredService<IDocumentStore>());

    private static GraphRunOptions Options(double deadlineSeconds = 30) =>
        new(TimeSpan.FromSeconds(deadlineSeconds), 4, new NodeRetryPolicy(2, TimeSpan.FromSeconds(1)), Trace: true);

    /// <summary>The body the registry sends for the diamond, as JSON.</summary>
    private static JsonObject Body(double deadlineSeconds = 30)
    {
        var request = new GraphRunRequest(DaprGraphRunner.ToWorkflowInput(Diamond, new JsonObject { ["x"] = 1 }, Options(deadlineSeconds),
            Diamond.Nodes.ToDictionary(n => n, _ => 1)), deadlineSeconds);
        return JsonSerializer.SerializeToNode(request, Json.Options)!.AsObject();
    }

    private static NodeCallResult Echo(NodeCallRequest call) =>
        new(true, new JsonObject { ["by"] = call.Node, ["got"] = JsonNode.Parse(call.InputJson) }.ToJsonString(), 200, "", "", DateTimeOffset.UnixEpoch, 1);

    [Fact]
    public async Task The_registry_runs_a_graph_through_the_graphs_app_and_reads_back_the_sink_output_and_trace()
    {
        var workflows = WorkflowInstancesDouble.RunningTheWorkflow(Echo);
        await using var app = await GraphsAppHost.StartAsync(workflows);

        var result = await RegistryRunner(app).RunAsync(Diamond, new JsonObject { ["x"] = 1 }, Options(), TestContext.Current.CancellationToken);

        result.Result!["by"]!.GetValue<string>().ShouldBe("D");
        result.Result["got"]!.AsArray().Select(p => p!["by"]!.GetValue<string>()).ShouldBe(["B", "C"]);
        result.Trace.Select(t => t.Node).Order().ShouldBe(["A", "B", "C", "D"]);
        // The workflow was scheduled with what the registry sent, field for field (the body is snake_case on the wire).
        var scheduled = workflows.Started.Values.ShouldHaveSingleItem();
        scheduled.FunctionIds.ShouldBe(Diamond.Nodes);
        scheduled.Connections["A"].ShouldBe(["B", "C"]);
        scheduled.Replicas["B"].ShouldBe(1);
        scheduled.InputJson.ShouldBe("""{"x":1}""");
        (scheduled.MaxParallelism, scheduled.RetryMaxAttempts, scheduled.RetryBackoffSeconds, scheduled.Trace).ShouldBe((4, 2, 1.0, true));
        scheduled.DeadlineSeconds.ShouldBe(30, "the workflow keeps the run's deadline, to stop by itself when nobody waits for it");
        workflows.Terminated.ShouldBeEmpty();
    }

    [Fact]
    public async Task A_run_answers_the_workflow_output_in_snake_case()
    {
        await using var app = await GraphsAppHost.StartAsync(WorkflowInstancesDouble.RunningTheWorkflow(Echo));

        var answer = await app.Client().Send(HttpMethod.Post, "/run_graph", Body());

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        var output = answer.Body!.AsObject();
        output.Select(p => p.Key).ShouldBe(["ok", "result_json", "trace", "error"]);
        output["ok"]!.GetValue<bool>().ShouldBeTrue();
        JsonNode.Parse(output["result_json"]!.GetValue<string>())!["by"]!.GetValue<string>().ShouldBe("D");
        output["trace"]!.AsArray().Count.ShouldBe(4);
        output["trace"]![0]!.AsObject().Select(p => p.Key).ShouldBe(["node", "input_json", "output_json", "started_at", "duration_ms"]);
        output["error"].ShouldBeNull();
    }

    [Fact]
    public async Task A_node_failure_reaches_the_registry_as_that_nodes_error()
    {
        var workflows = WorkflowInstancesDouble.RunningTheWorkflow(call => call.Node == "C"
            ? new NodeCallResult(false, "", 422, "policy_error", "C refused", DateTimeOffset.UnixEpoch, 1)
            : Echo(call));
        await using var app = await GraphsAppHost.StartAsync(workflows);

        var error = await Should.ThrowAsync<PolicyGridException>(() =>
            RegistryRunner(app).RunAsync(Diamond, new JsonObject(), Options(), TestContext.Current.CancellationToken));

        (error.Status, error.Code).ShouldBe((422, "policy_error"));
        error.Message.ShouldBe("graph node 'C' failed: C refused");
    }

    [Theory]
    [InlineData(WorkflowRuntimeStatus.Failed)]
    [InlineData(WorkflowRuntimeStatus.Terminated)]
    [InlineData(WorkflowRuntimeStatus.Canceled)]
    public async Task A_workflow_that_did_not_complete_answers_502_backend_error_saying_how_it_ended(WorkflowRuntimeStatus status)
    {
        var workflows = WorkflowInstancesDouble.EndingWith(status, null, "activity host lost");
        await using var app = await GraphsAppHost.StartAsync(workflows);

        var answer = await app.Client().Send(HttpMethod.Post, "/run_graph", Body());

        (answer.Status, answer.Code, answer.Success).ShouldBe((502, ErrorCodes.BackendError, false));
        answer.Message.ShouldBe($"graph workflow {workflows.Started.Keys.Single()} ended {status}: activity host lost");
    }

    [Fact]
    public async Task A_completed_workflow_without_an_output_answers_502()
    {
        await using var app = await GraphsAppHost.StartAsync(WorkflowInstancesDouble.EndingWith(WorkflowRuntimeStatus.Completed, null, null));

        var answer = await app.Client().Send(HttpMethod.Post, "/run_graph", Body());

        (answer.Status, answer.Code).ShouldBe((502, ErrorCodes.BackendError));
        answer.Message.ShouldContain("completed without an output");
    }

    [Fact]
    public async Task A_run_past_its_deadline_answers_504_and_its_workflow_is_terminated()
    {
        var workflows = WorkflowInstancesDouble.NeverEnding();
        await using var app = await GraphsAppHost.StartAsync(workflows);

        var answer = await app.Client().Send(HttpMethod.Post, "/run_graph", Body(deadlineSeconds: 0.2));

        (answer.Status, answer.Code).ShouldBe((504, ErrorCodes.PolicyTimeout));
        answer.Message.ShouldBe("graph ran past its deadline of 0.2s; unfinished nodes: A, B, C, D");
        workflows.Terminated.ShouldBe([workflows.Started.Keys.Single()]);

        // The registry answers its own caller the same 504.
        var error = await Should.ThrowAsync<PolicyGridException>(() =>
            RegistryRunner(app).RunAsync(Diamond, new JsonObject(), Options(deadlineSeconds: 0.2), TestContext.Current.CancellationToken));
        (error.Status, error.Code).ShouldBe((504, ErrorCodes.PolicyTimeout));
        workflows.Terminated.Count.ShouldBe(2);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_graphs_app_that_does_not_answer_by_the_deadline_is_the_runs_504_for_the_registry()
    {
        // The sidecar's HttpClient has no timeout of its own (it gave up after 5 minutes, a 500, for runs allowed an
        // hour): the registry waits for the run's deadline and a grace for the hops, then answers the run's 504.
        var runner = new DaprGraphRunner(new HangingSidecar(), _registry.GetRequiredService<IDocumentStore>()) { Grace = TimeSpan.FromMilliseconds(50) };

        var error = await Should.ThrowAsync<PolicyGridException>(() =>
            runner.RunAsync(Diamond, new JsonObject(), Options(deadlineSeconds: 0.1), TestContext.Current.CancellationToken));

        (error.Status, error.Code).ShouldBe((504, ErrorCodes.PolicyTimeout));
        error.Message.ShouldBe("graph ran past its deadline of 0.1s; unfinished nodes: A, B, C, D");
    }

    /// <summary>A sidecar whose graphs app never answers: the request ends only when its caller cancels it.</summary>
    private sealed class HangingSidecar : HttpMessageHandler, IHttpClientFactory
    {
        public HttpClient CreateClient(string name) =>
            new(this, disposeHandler: false) { BaseAddress = new Uri("http://127.0.0.1:3500/"), Timeout = Timeout.InfiniteTimeSpan };

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            throw new InvalidOperationException("unreachable");
        }
    }

    [Fact]
    public async Task A_sidecar_that_cannot_be_reached_when_starting_answers_503_and_schedules_nothing()
    {
        var workflows = WorkflowInstancesDouble.FailingToStart(Grpc.Core.StatusCode.Unavailable, "connection refused (127.0.0.1:50001)");
        await using var app = await GraphsAppHost.StartAsync(workflows);

        var answer = await app.Client().Send(HttpMethod.Post, "/run_graph", Body());

        (answer.Status, answer.Code).ShouldBe((503, ErrorCodes.BackendUnavailable), answer.Body?.ToJsonString());
        answer.Message.ShouldStartWith("starting graph workflow graph-");
        answer.Message.ShouldContain("connection refused (127.0.0.1:50001)");
        workflows.Started.ShouldBeEmpty();
    }

    [Fact]
    public async Task A_sidecar_that_refuses_to_start_the_run_answers_502_with_its_reason()
    {
        var workflows = WorkflowInstancesDouble.FailingToStart(Grpc.Core.StatusCode.FailedPrecondition, "no workflow engine: actor runtime not ready");
        await using var app = await GraphsAppHost.StartAsync(workflows);

        var answer = await app.Client().Send(HttpMethod.Post, "/run_graph", Body());

        (answer.Status, answer.Code).ShouldBe((502, ErrorCodes.BackendError));
        answer.Message.ShouldContain("no workflow engine: actor runtime not ready");
    }

    [Fact]
    public async Task Losing_the_sidecar_while_waiting_answers_503_and_the_run_is_stopped()
    {
        var workflows = WorkflowInstancesDouble.FailingToWait(new HttpRequestException("Connection refused (127.0.0.1:50001)"));
        await using var app = await GraphsAppHost.StartAsync(workflows);

        var answer = await app.Client().Send(HttpMethod.Post, "/run_graph", Body());

        (answer.Status, answer.Code).ShouldBe((503, ErrorCodes.BackendUnavailable));
        answer.Message.ShouldStartWith($"waiting for graph workflow {workflows.Started.Keys.Single()}");
        workflows.Terminated.ShouldBe([workflows.Started.Keys.Single()]);
    }

    [Fact]
    public async Task A_run_past_its_deadline_still_answers_504_when_stopping_it_fails()
    {
        var workflows = WorkflowInstancesDouble.NeverEnding(
            terminateFailure: new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.Unavailable, "sidecar went away")));
        await using var app = await GraphsAppHost.StartAsync(workflows);

        var answer = await app.Client().Send(HttpMethod.Post, "/run_graph", Body(deadlineSeconds: 0.2));

        (answer.Status, answer.Code).ShouldBe((504, ErrorCodes.PolicyTimeout));
        workflows.Terminated.ShouldBe([workflows.Started.Keys.Single()]);
    }

    [Fact]
    public async Task A_run_whose_caller_went_away_is_terminated_too()
    {
        var workflows = WorkflowInstancesDouble.NeverEnding();
        using var caller = new CancellationTokenSource();

        var run = new GraphWorkflowRuns(workflows).RunAsync(GraphRunRequest.FromJson(Body()), caller.Token);
        await caller.CancelAsync();

        await Should.ThrowAsync<OperationCanceledException>(run);
        workflows.Terminated.ShouldBe([workflows.Started.Keys.Single()]);
    }

    [Fact]
    public async Task The_workflow_instance_is_named_after_the_runs_execution_id_and_its_scheduling_is_logged()
    {
        // It was "graph-<a GUID of its own>", which nothing tied to the run: an operator looking at a stuck workflow could
        // not find the execution, nor its decision records.
        var workflows = WorkflowInstancesDouble.RunningTheWorkflow(Echo);
        var capture = new LogCapture();
        using var logs = LoggerFactory.Create(l => l.AddProvider(capture));
        var runs = new GraphWorkflowRuns(workflows, logs.CreateLogger<GraphWorkflowRuns>());
        var options = Options() with { Origin = new FunctionCallOrigin("ops", "diamond:1-t", "5f0c4e3b9a2d4c1e8f7a6b5c4d3e2f1a") };
        var request = new GraphRunRequest(DaprGraphRunner.ToWorkflowInput(Diamond, new JsonObject(), options, Diamond.Nodes.ToDictionary(n => n, _ => 1)), 30);

        var output = await runs.RunAsync(request, TestContext.Current.CancellationToken);

        output.Ok.ShouldBeTrue();
        workflows.Started.Keys.ShouldBe(["graph-5f0c4e3b9a2d4c1e8f7a6b5c4d3e2f1a"]);
        capture.Entries.Where(e => e.Level == LogLevel.Information).Select(e => e.Message).ShouldContain(
            "graph execution 5f0c4e3b9a2d4c1e8f7a6b5c4d3e2f1a of diamond:1-t for ops: workflow instance graph-5f0c4e3b9a2d4c1e8f7a6b5c4d3e2f1a scheduled");

        // A sender that names no execution (another app posting to run_graph) gets an instance id of its own.
        await runs.RunAsync(request with { Graph = request.Graph with { ExecutionId = "" } }, TestContext.Current.CancellationToken);
        workflows.Started.Keys.Where(k => k != "graph-5f0c4e3b9a2d4c1e8f7a6b5c4d3e2f1a").ShouldHaveSingleItem().ShouldMatch("^graph-[0-9a-f]{32}$");
    }

    [Theory]
    [InlineData("deadline_seconds", null, "deadline_seconds")]
    [InlineData("deadline_seconds", "0", "deadline_seconds")]
    [InlineData("deadline_seconds", "\"soon\"", "deadline_seconds")]
    [InlineData("graph", null, "graph")]
    [InlineData("graph.function_ids", null, "graph.function_ids")]
    [InlineData("graph.function_ids", "[]", "graph.function_ids")]
    [InlineData("graph.function_ids", "\"A\"", "graph.function_ids")]
    [InlineData("graph.function_ids", """["A", "B", "C", "D", "A"]""", "graph.function_ids[4]")]
    [InlineData("graph.function_ids", """["A", null, "C", "D"]""", "graph.function_ids[1]")]
    [InlineData("graph.connections", null, "graph.connections")]
    [InlineData("graph.connections", """{"A": ["Z"], "B": ["D"], "C": ["D"]}""", "graph.connections.A")]
    [InlineData("graph.connections", """{"A": ["B", "C"], "B": ["D"], "C": ["D"], "D": ["A"]}""", "graph.connections")]
    [InlineData("graph.connections", """{"A": ["B", null]}""", "graph.connections.A[1]")]
    [InlineData("graph.replicas", null, "graph.replicas")]
    [InlineData("graph.replicas.B", "0", "graph.replicas.B")]
    [InlineData("graph.input_json", null, "graph.input_json")]
    [InlineData("graph.input_json", "\"{not json\"", "graph.input_json")]
    [InlineData("graph.max_parallelism", "0", "graph.max_parallelism")]
    [InlineData("graph.retry_max_attempts", "0", "graph.retry_max_attempts")]
    [InlineData("graph.retry_backoff_seconds", "-1", "graph.retry_backoff_seconds")]
    [InlineData("graph.trace", "\"yes\"", "graph.trace")]
    [InlineData("graph.execution_id", "\"a/b\"", "graph.execution_id")]
    [InlineData("graph.execution_id", "\"0123456789012345678901234567890123456789012345678901234567890123456789\"", "graph.execution_id")]
    public async Task A_bad_field_is_a_400_naming_it_and_schedules_nothing(string field, string? value, string named)
    {
        var workflows = WorkflowInstancesDouble.RunningTheWorkflow(Echo);
        await using var app = await GraphsAppHost.StartAsync(workflows);
        var body = Body();
        Set(body, field, value);

        var answer = await app.Client().Send(HttpMethod.Post, "/run_graph", body);

        (answer.Status, answer.Code).ShouldBe((400, ErrorCodes.ValidationFailed), answer.Body?.ToJsonString());
        answer.Body!["errors"]!.AsArray().Select(e => e!["path"]!.GetValue<string>()).ShouldContain(named);
        answer.Message.ShouldContain(named);
        workflows.Started.ShouldBeEmpty();
    }

    [Theory]
    [InlineData("{\"graph\": ")]
    [InlineData("")]
    [InlineData("[1, 2]")]
    [InlineData("null")]
    public async Task A_body_that_is_not_a_json_object_is_a_400_bad_request(string raw)
    {
        var workflows = WorkflowInstancesDouble.RunningTheWorkflow(Echo);
        await using var app = await GraphsAppHost.StartAsync(workflows);

        var answer = await app.Client().Send(HttpMethod.Post, "/run_graph", raw: raw);

        (answer.Status, answer.Code).ShouldBe((400, ErrorCodes.BadRequest), answer.Body?.ToJsonString());
        answer.Message.ShouldContain("JSON");
        workflows.Started.ShouldBeEmpty();
    }

    /// <summary>Sets (or, for a null value, removes) the field at a dotted path.</summary>
    private static void Set(JsonObject body, string path, string? json)
    {
        var names = path.Split('.');
        var parent = names[..^1].Aggregate(body, (node, name) => node[name]!.AsObject());
        if (json is null) parent.Remove(names[^1]);
        else parent[names[^1]] = JsonNode.Parse(json);
    }
}
