using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Graphs;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Workflows;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>The registry's side of the Dapr runner: what it hands the workflow and how it reads the answer back.</summary>
public sealed class DaprGraphRunnerTests
{
    private static readonly GraphPlan Diamond = GraphPlan.Build(["A", "C", "B", "D"],
        new Dictionary<string, IReadOnlyList<string>> { ["A"] = ["B", "C"], ["B"] = ["D"], ["C"] = ["D"] });

    [Fact]
    public void Who_started_the_run_and_which_run_it_is_travel_to_the_workflow_and_survive_the_trip_as_json()
    {
        var options = new GraphRunOptions(TimeSpan.FromSeconds(30)) { Origin = new FunctionCallOrigin("ci", "g:1.0-a", "run-7") };
        var input = DaprGraphRunner.ToWorkflowInput(Diamond, new JsonObject(), options, new Dictionary<string, int>());

        var sent = System.Text.Json.JsonSerializer.SerializeToNode(new GraphRunRequest(input, 30), PolicyGrid.Core.Documents.Json.Options);
        var received = GraphRunRequest.FromJson(sent).Graph;

        (received.Caller, received.GraphId, received.ExecutionId).ShouldBe(("ci", "g:1.0-a", "run-7"));
    }

    [Fact]
    public async Task The_plan_handed_to_the_workflow_runs_there_to_the_same_answer_as_the_embedded_runner()
    {
        var options = new GraphRunOptions(TimeSpan.FromSeconds(30), 4, new NodeRetryPolicy(2, TimeSpan.FromSeconds(1)), Trace: true);
        var input = DaprGraphRunner.ToWorkflowInput(Diamond, new JsonObject { ["x"] = 1 }, options, new Dictionary<string, int> { ["A"] = 1, ["B"] = 2, ["C"] = 1, ["D"] = 1 });

        input.MaxParallelism.ShouldBe(4);
        input.RetryMaxAttempts.ShouldBe(2);
        input.RetryBackoffSeconds.ShouldBe(1);
        input.Trace.ShouldBeTrue();

        var context = new WorkflowContextDouble(async (_, request) =>
        {
            var call = (NodeCallRequest)request!;
            await Task.Yield();
            return new NodeCallResult(true, new JsonObject { ["by"] = call.Node, ["got"] = JsonNode.Parse(call.InputJson) }.ToJsonString(), 200, "", "", DateTimeOffset.UnixEpoch, 2);
        });
        var viaWorkflow = DaprGraphRunner.ToResult(await new PolicyGraphWorkflow().RunAsync(context, input));

        var functions = new ScriptedFunctions().Echo("A", "B", "C", "D");
        var embedded = await new PolicyGrid.Embedded.Graphs.LocalGraphRunner(functions, TimeProvider.System)
            .RunAsync(Diamond, new JsonObject { ["x"] = 1 }, options, TestContext.Current.CancellationToken);

        viaWorkflow.Result!.ToJsonString().ShouldBe(embedded.Result!.ToJsonString());
        viaWorkflow.Trace.Select(t => t.Node).Order().ShouldBe(["A", "B", "C", "D"]);
    }

    [Fact]
    public void A_failed_workflow_output_becomes_the_node_failure_the_api_answers()
    {
        var output = GraphWorkflowOutput.Failed(new GraphNodeError("C", 504, "policy_timeout", "policy ran past 30s"), []);

        var error = Should.Throw<PolicyGridException>(() => DaprGraphRunner.ToResult(output));

        error.Status.ShouldBe(504);
        error.Code.ShouldBe("policy_timeout");
        error.Message.ShouldBe("graph node 'C' failed: policy ran past 30s");
        error.Errors.ShouldHaveSingleItem().Path.ShouldBe("C");
    }
}
