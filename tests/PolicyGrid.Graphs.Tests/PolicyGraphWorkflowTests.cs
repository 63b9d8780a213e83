using System.Text.Json.Nodes;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Workflows;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

public sealed class PolicyGraphWorkflowTests
{
    private static readonly string[] DiamondIds = ["A", "B", "C", "D"];

    private static GraphWorkflowInput Graph(string[] ids, (string From, string[] To)[] edges, string input = """{"x":1}""", int parallelism = 8) =>
        new(ids, edges.ToDictionary(e => e.From, e => (IReadOnlyList<string>)e.To), ids.ToDictionary(i => i, _ => 1), input, parallelism);

    private static GraphWorkflowInput Diamond(string[]? ids = null) =>
        Graph(ids ?? DiamondIds, [("A", ["B", "C"]), ("B", ["D"]), ("C", ["D"])]);

    /// <summary>An activity answering <c>{"by": node, "got": input}</c>.</summary>
    private static NodeCallResult Echo(NodeCallRequest call) =>
        Ok(new JsonObject { ["by"] = call.Node, ["got"] = JsonNode.Parse(call.InputJson) });

    private static NodeCallResult Ok(JsonObject output) => new(true, output.ToJsonString(), 200, "", "", DateTimeOffset.UnixEpoch, 1.5);

    private static Func<string, object?, Task<object?>> Activities(Func<NodeCallRequest, Task<NodeCallResult>> body) => async (name, input) =>
    {
        name.ShouldBe(GraphWorkflows.CallNodeActivity);
        return await body((NodeCallRequest)input!);
    };

    [Fact]
    public async Task Diamond_fans_out_the_branches_together_and_joins_after_both()
    {
        // B answers only once C has started, so the run completes only if the workflow fans B and C out together.
        var cStarted = new TaskCompletionSource();
        var context = new WorkflowContextDouble(Activities(async call =>
        {
            if (call.Node == "C") cStarted.SetResult();
            if (call.Node == "B") await cStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
            return Echo(call);
        }));

        var output = await new PolicyGraphWorkflow().RunAsync(context, Diamond());

        output.Ok.ShouldBeTrue();
        var events = context.Events.ToList();
        events.IndexOf("start B").ShouldBeGreaterThan(events.IndexOf("end A"));
        events.IndexOf("start C").ShouldBeGreaterThan(events.IndexOf("end A"));
        events.IndexOf("start D").ShouldBeGreaterThan(events.IndexOf("end B"));
        events.IndexOf("start D").ShouldBeGreaterThan(events.IndexOf("end C"));
        context.PeakInFlight.ShouldBe(2);
        var result = JsonNode.Parse(output.ResultJson)!;
        result["by"]!.GetValue<string>().ShouldBe("D");
        result["got"]!.AsArray().Select(o => o!["by"]!.GetValue<string>()).ShouldBe(["B", "C"]);
        result["got"]![0]!["got"]!["by"]!.GetValue<string>().ShouldBe("A");
        result["got"]![0]!["got"]!["got"]!.ToJsonString().ShouldBe("""{"x":1}""");
    }

    [Fact]
    public async Task Join_receives_parents_outputs_in_graph_function_ids_order()
    {
        var context = new WorkflowContextDouble(Activities(call => Task.FromResult(Echo(call))));

        var output = await new PolicyGraphWorkflow().RunAsync(context, Diamond(["A", "C", "B", "D"]));

        JsonNode.Parse(output.ResultJson)!["got"]!.AsArray().Select(o => o!["by"]!.GetValue<string>()).ShouldBe(["C", "B"]);
    }

    [Fact]
    public async Task Chain_calls_each_node_once_in_order_with_the_previous_output()
    {
        var context = new WorkflowContextDouble(Activities(call => Task.FromResult(Echo(call))));

        var output = await new PolicyGraphWorkflow().RunAsync(context, Graph(["A", "B", "C"], [("A", ["B"]), ("B", ["C"])]));

        context.Calls.Select(c => ((NodeCallRequest)c.Input!).Node).ShouldBe(["A", "B", "C"]);
        output.ResultJson.ShouldBe("""{"by":"C","got":{"by":"B","got":{"by":"A","got":{"x":1}}}}""");
    }

    [Fact]
    public async Task A_failing_branch_stops_the_graph_and_names_the_node()
    {
        var context = new WorkflowContextDouble(Activities(call => Task.FromResult(call.Node == "C"
            ? new NodeCallResult(false, "", 422, "policy_error", "KeyError: 'ip'", DateTimeOffset.UnixEpoch, 1)
            : Echo(call))));

        var output = await new PolicyGraphWorkflow().RunAsync(context, Diamond());

        output.Ok.ShouldBeFalse();
        output.Error.ShouldBe(new GraphNodeError("C", 422, "policy_error", "KeyError: 'ip'"));
        context.Calls.Select(c => ((NodeCallRequest)c.Input!).Node).ShouldNotContain("D");
    }

    [Fact]
    public async Task Fan_out_is_bounded_by_max_parallelism()
    {
        var ids = Enumerable.Range(0, 6).Select(i => $"N{i}").Append("S").ToArray();
        var graph = Graph(ids, [.. ids[..^1].Select(id => (id, new[] { "S" }))], parallelism: 2);
        var context = new WorkflowContextDouble(Activities(async call => { await Task.Yield(); return Echo(call); }));

        var output = await new PolicyGraphWorkflow().RunAsync(context, graph);

        context.PeakInFlight.ShouldBeLessThanOrEqualTo(2);
        JsonNode.Parse(output.ResultJson)!["got"]!.AsArray().Count.ShouldBe(6);
    }

    [Fact]
    public async Task Node_retry_tries_again_after_a_durable_timer_and_none_by_default()
    {
        var attempts = 0;
        Func<string, object?, Task<object?>> Flaky() => Activities(call => Task.FromResult(call.Node == "A" && ++attempts < 3
            ? new NodeCallResult(false, "", 503, "backend_unavailable", "down", DateTimeOffset.UnixEpoch, 1)
            : Echo(call)));
        var chain = Graph(["A", "B"], [("A", ["B"])]);

        (await new PolicyGraphWorkflow().RunAsync(new WorkflowContextDouble(Flaky()), chain)).Error!.Node.ShouldBe("A");
        attempts.ShouldBe(1);

        attempts = 0;
        var context = new WorkflowContextDouble(Flaky());
        var output = await new PolicyGraphWorkflow().RunAsync(context, chain with { RetryMaxAttempts = 3, RetryBackoffSeconds = 2 });
        output.Ok.ShouldBeTrue();
        attempts.ShouldBe(3);
        context.Timers.ShouldBe([TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2)]);
    }

    [Fact]
    public async Task A_node_that_fails_for_good_stops_its_siblings_retries_and_answers_at_once_naming_it()
    {
        // B is unavailable (retried), C refuses its input (a caller's 400, never retried). The test answers C first, then
        // B, on its own thread, as the orchestrator replays completions one at a time: C's failure is the run's, as on the
        // embedded runner, and B is not tried again after it. B used to be retried to its last attempt, backoff after
        // backoff, past the run's deadline (a 504 naming no node) while C's answer waited, and was named instead of C.
        var answers = new Dictionary<string, TaskCompletionSource<object?>> { ["B"] = new(), ["C"] = new() };
        var context = new WorkflowContextDouble(Activities(async call =>
            answers.TryGetValue(call.Node, out var answer) ? (NodeCallResult)(await answer.Task)! : Echo(call)));

        var run = new PolicyGraphWorkflow().RunAsync(context, Diamond() with { RetryMaxAttempts = 10, RetryBackoffSeconds = 30 });
        answers["C"].SetResult(new NodeCallResult(false, "", 400, "validation_failed", "input_data.ip: is required", DateTimeOffset.UnixEpoch, 1));
        answers["B"].SetResult(new NodeCallResult(false, "", 503, "backend_unavailable", "down", DateTimeOffset.UnixEpoch, 1));
        var output = await run.WaitAsync(TimeSpan.FromSeconds(10));

        output.Error.ShouldBe(new GraphNodeError("C", 400, "validation_failed", "input_data.ip: is required"));
        context.Calls.Count(c => ((NodeCallRequest)c.Input!).Node == "B").ShouldBe(1);
        context.Calls.Select(c => ((NodeCallRequest)c.Input!).Node).ShouldNotContain("D");
    }

    [Fact]
    public async Task No_node_of_a_level_starts_after_a_node_of_it_failed()
    {
        // Parallelism 2 runs the root's five children two at a time: X fails at once, and none of the others starts after.
        var graph = Graph(["R", "X", "V", "W", "Y", "Z", "S"],
            [("R", ["X", "V", "W", "Y", "Z"]), ("X", ["S"]), ("V", ["S"]), ("W", ["S"]), ("Y", ["S"]), ("Z", ["S"])], parallelism: 2);
        var context = new WorkflowContextDouble(Activities(call => Task.FromResult(call.Node == "X"
            ? new NodeCallResult(false, "", 422, "policy_error", "RuntimeError: no", DateTimeOffset.UnixEpoch, 1)
            : Echo(call))));

        var output = await new PolicyGraphWorkflow().RunAsync(context, graph);

        output.Error!.Node.ShouldBe("X");
        context.Calls.Select(c => ((NodeCallRequest)c.Input!).Node).ShouldBe(["R", "X"]);
    }

    [Fact]
    public async Task Past_its_deadline_a_run_starts_no_further_node()
    {
        // A run whose graphs app restarted while it waited is terminated by nobody: it used to go on calling every node
        // for a caller long gone. A outlasts the 5 s deadline; B and C (and D) never start, and the run names B.
        WorkflowContextDouble context = null!;
        context = new WorkflowContextDouble(Activities(call =>
        {
            if (call.Node == "A") context.Now += TimeSpan.FromSeconds(6);
            return Task.FromResult(Echo(call));
        }));

        var output = await new PolicyGraphWorkflow().RunAsync(context, Diamond() with { DeadlineSeconds = 5 });

        output.Error.ShouldBe(new GraphNodeError("B", 504, "policy_timeout", "the run's deadline of 5s passed before this node started"));
        context.Calls.Select(c => ((NodeCallRequest)c.Input!).Node).ShouldBe(["A"]);
    }

    [Fact]
    public async Task Past_its_deadline_a_failing_node_is_not_tried_again()
    {
        // Each 2 s backoff moves the workflow's clock on: tries at 0, 2 and 4 s, none at 6 s, past the 5 s deadline.
        var context = new WorkflowContextDouble(Activities(call => Task.FromResult(
            new NodeCallResult(false, "", 503, "backend_unavailable", "down", DateTimeOffset.UnixEpoch, 1))));

        var output = await new PolicyGraphWorkflow().RunAsync(context,
            Graph(["A"], []) with { RetryMaxAttempts = 10, RetryBackoffSeconds = 2, DeadlineSeconds = 5 });

        context.Calls.Count.ShouldBe(3);
        output.Error.ShouldBe(new GraphNodeError("A", 504, "policy_timeout", "the run's deadline of 5s passed before this node could be tried again"));
    }

    [Fact]
    public async Task Trace_lists_every_node_with_its_input_and_output()
    {
        var context = new WorkflowContextDouble(Activities(call => Task.FromResult(Echo(call))));

        var output = await new PolicyGraphWorkflow().RunAsync(context, Diamond() with { Trace = true });

        output.Trace.Select(t => t.Node).ShouldBe(["A", "B", "C", "D"]);
        output.Trace[0].InputJson.ShouldBe("""{"x":1}""");
        output.Trace.ShouldAllBe(t => t.DurationMs == 1.5);
    }

    [Fact]
    public async Task A_replicated_node_tells_the_activity_how_many_actors_it_has()
    {
        var context = new WorkflowContextDouble(Activities(call => Task.FromResult(Echo(call))));
        var graph = Graph(["A", "B"], [("A", ["B"])]) with { Replicas = new Dictionary<string, int> { ["A"] = 3, ["B"] = 1 } };

        await new PolicyGraphWorkflow().RunAsync(context, graph);

        context.Calls.Select(c => ((NodeCallRequest)c.Input!).Replicas).ShouldBe([3, 1]);
    }

    [Fact]
    public async Task Each_node_call_carries_who_started_the_run_and_which_run_for_the_actors_decision_record()
    {
        var context = new WorkflowContextDouble(Activities(call => Task.FromResult(Echo(call))));
        var graph = Graph(["A", "B"], [("A", ["B"])]) with { Caller = "ci", GraphId = "g:1.0-a", ExecutionId = "run-1" };

        await new PolicyGraphWorkflow().RunAsync(context, graph);

        context.Calls.Select(c => (NodeCallRequest)c.Input!).ShouldAllBe(c => c.Caller == "ci" && c.GraphId == "g:1.0-a" && c.ExecutionId == "run-1");
    }

    [Fact]
    public async Task A_run_whose_sender_did_not_say_who_started_it_names_the_run_as_the_caller()
    {
        var context = new WorkflowContextDouble(Activities(call => Task.FromResult(Echo(call))));

        await new PolicyGraphWorkflow().RunAsync(context, Graph(["A"], []));

        var call = (NodeCallRequest)context.Calls.Single().Input!;
        call.ExecutionId.ShouldBe(context.InstanceId);
        call.Caller.ShouldBe($"graph:{context.InstanceId}");
    }

    [Fact]
    public async Task Inputs_and_calls_written_by_the_previous_version_without_caller_graph_or_run_still_read_and_replay()
    {
        // What the Dapr runtime holds for a run (and an activity call, and an actor call) scheduled before these fields
        // existed, as System.Text.Json wrote it: it must read back, or in-flight runs fail on replay after an upgrade.
        var web = new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web);
        var input = System.Text.Json.JsonSerializer.Deserialize<GraphWorkflowInput>("""
            {"functionIds":["A"],"connections":{},"replicas":{"A":1},"inputJson":"{}","maxParallelism":8,
             "retryMaxAttempts":1,"retryBackoffSeconds":0,"trace":false,"executors":null}
            """, web)!;
        (input.Caller, input.GraphId, input.ExecutionId).ShouldBe(("", "", ""));
        var context = new WorkflowContextDouble(Activities(call => Task.FromResult(Echo(call))));
        (await new PolicyGraphWorkflow().RunAsync(context, input)).Ok.ShouldBeTrue();
        ((NodeCallRequest)context.Calls.Single().Input!).Caller.ShouldBe($"graph:{context.InstanceId}");

        var activityCall = System.Text.Json.JsonSerializer.Deserialize<NodeCallRequest>("""{"node":"A","replicas":1,"inputJson":"{}","executorUri":null}""", web)!;
        (activityCall.Caller, activityCall.GraphId, activityCall.ExecutionId).ShouldBe(("", "", ""));
        var actorCall = System.Text.Json.JsonSerializer.Deserialize<PolicyGrid.Dapr.Functions.FunctionActorCall>("""{"inputJson":"{}"}""", web)!;
        actorCall.Caller.ShouldBe("", "the actor records an older sender's call as caller 'unknown'");
    }
}
