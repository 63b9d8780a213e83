using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// <c>Decisions:WhenUnrecorded</c> on the embedded server, with its decision writes refused for a while: <c>refuse</c>
/// answers every call that would be recorded 503 before its policy runs, and serves again once the store takes a
/// decision (the refused calls' own records, with no other traffic); <c>serve</c> keeps running them unrecorded.
/// </summary>
public sealed class UnrecordedCallsTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Each run that really happens advances the count kept in its context: a refused call must not.
    private const string CountingRuns = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                context["runs"] = context.get("runs", 0) + 1
                return {"runs": context["runs"]}
            def management(self, action, data):
                return {"action": action}
        """;

    private const string RefusalEnd = $": {DecisionStoreOutage.Refusal}; this executor refuses calls it cannot record (Decisions:WhenUnrecorded=refuse)";

    /// <summary>A server whose decision log writes through <see cref="Outage"/>, with <c>WhenUnrecorded</c> as given (unset: the default).</summary>
    private sealed class OutageServer
    {
        public OutageServer(string? whenUnrecorded)
        {
            // Held decisions are written again only when a newer one is written, so the first call after the store is back
            // is still refused, every time (the retry on its own is DecisionLogTests').
            var settings = new Dictionary<string, string?> { ["PolicyGrid:Runtime:Decisions:RetryInterval"] = "01:00:00" };
            if (whenUnrecorded is not null) settings["PolicyGrid:Runtime:Decisions:WhenUnrecorded"] = whenUnrecorded;
            Server = new GridServer
            {
                PythonWorkers = 1,
                Settings = settings,
                TestServices = services =>
                {
                    services.RemoveAll<DecisionLog>();
                    services.AddSingleton(sp => new DecisionLog(Outage = new DecisionStoreOutage(sp.GetRequiredService<IDocumentStore>()),
                        sp.GetRequiredService<PolicyRuntimeOptions>().Decisions, TimeProvider.System, sp.GetRequiredService<ILogger<DecisionLog>>(),
                        sp.GetRequiredService<ServerStop>()));
                },
            };
        }

        public GridServer Server { get; }
        public DecisionStoreOutage Outage { get; private set; } = null!;
        public DecisionLog Decisions => Server.Service<DecisionLog>();

        /// <summary>Takes the store down and makes one call that runs (its record is the one lost), so the log is failing.</summary>
        public async Task FailLogAfterAsync(Func<Task<Answer>> call)
        {
            await Decisions.FlushAsync(Ct); // earlier calls' records are in: only the next call's is lost
            Outage.Down = true;
            (await call()).Status.ShouldBe(200, "a call that starts before the log has lost anything runs (the batch window)");
            await Decisions.FlushAsync(Ct);
            Decisions.Failure.ShouldNotBeNull();
        }
    }

    private static void ShouldBeRefusedUnrecorded(Answer answer)
    {
        answer.Status.ShouldBe(503, answer.Body?.ToJsonString());
        answer.Code.ShouldBe(ErrorCodes.BackendUnavailable);
        answer.Message.ShouldStartWith("the decision log cannot record decisions since ");
        answer.Message.ShouldEndWith(RefusalEnd);
        answer.Header("Retry-After").ShouldBe("1");
    }

    [Fact]
    public async Task With_refuse_Type_2_calls_are_refused_before_the_policy_runs_while_decisions_are_lost_and_served_once_the_store_takes_one()
    {
        var outage = new OutageServer("refuse");
        await using var server = outage.Server;
        var client = server.CreateClient();
        var uri = await server.RegisterPolicyAsync("counted", CountingRuns);
        var execute = $$"""{"policy_rule_uri": "{{uri}}", "input_data": {}, "context_key": "runs"}""";
        (await client.Post("/executor/local/execute_policy", execute)).Data!["runs"]!.GetValue<int>().ShouldBe(1);
        await outage.FailLogAfterAsync(() => client.Post("/executor/local/execute_policy", execute));

        ShouldBeRefusedUnrecorded(await client.Post("/executor/local/execute_policy", execute));
        ShouldBeRefusedUnrecorded(await client.Post("/executor/local/management", $$$"""{"policy_rule_uri": "{{{uri}}}", "action": "peek", "data": {}}"""));
        await outage.Decisions.FlushAsync(Ct);
        outage.Decisions.Failure!.Lost.ShouldBe(3, "the refused calls' records went to the store too");
        (await client.Get("/executor/local")).Data!["executor_status"]!.GetValue<string>().ShouldBe("healthy", "the executor is up: it is the log that cannot record");

        // The store is back; nothing but refused calls arrives. The first one's own record ends the failure.
        outage.Outage.Down = false;
        ShouldBeRefusedUnrecorded(await client.Post("/executor/local/execute_policy", execute));
        await outage.Decisions.FlushAsync(Ct);
        outage.Decisions.Failure.ShouldBeNull();

        var served = await client.Post("/executor/local/execute_policy", execute);
        served.Status.ShouldBe(200, served.Body?.ToJsonString());
        served.Data!["runs"]!.GetValue<int>().ShouldBe(3, "the two calls before the failure ran; the three refused did not");
        await outage.Decisions.FlushAsync(Ct);
        var recorded = (await server.Store.QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct)).Select(d => d.Body).ToList();
        recorded.Count(d => d["status"]!.GetValue<int>() == 503 && d["error_code"]!.GetValue<string>() == ErrorCodes.BackendUnavailable
            && d["policy_rule_uri"]!.GetValue<string>() == uri).ShouldBe(3, "the refusals, those the store refused held and written once it was back, are in the log");
        (await client.Get("/readyz")).Status.ShouldBe(200);
    }

    [Fact]
    public async Task With_refuse_function_calls_management_and_graph_runs_are_refused_before_the_function_runs_and_served_once_the_store_takes_one()
    {
        var outage = new OutageServer("refuse");
        await using var server = outage.Server;
        var client = server.CreateClient();
        var uri = await server.RegisterPolicyAsync("counted", CountingRuns);
        var deployed = await client.Post("/function/deployments/create/local", $$"""{"name": "tally", "policy_rule_uri": "{{uri}}", "replicas": 1}""");
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        var graph = await client.Post("/graphs", """
            {"graph_name": "tallied", "graph_version": "1.0", "graph_release_tag": "test", "graph_function_ids": ["tally"], "graph_connection_data": {}}
            """);
        graph.Status.ShouldBe(200, graph.Body?.ToJsonString());
        var runGraph = $$$"""{"graph_uri": "{{{graph.Data!["graph_uri"]!.GetValue<string>()}}}", "input_data": {}}""";
        (await client.Post("/function/call_function/tally", "{}")).Data!["runs"]!.GetValue<int>().ShouldBe(1);
        await outage.FailLogAfterAsync(() => client.Post("/function/call_function/tally", "{}"));

        ShouldBeRefusedUnrecorded(await client.Post("/function/call_function/tally", "{}"));
        ShouldBeRefusedUnrecorded(await client.Post("/function/tally/management", """{"action": "peek", "data": {}}"""));
        ShouldBeRefusedUnrecorded(await client.Post("/graph/execute_graph", runGraph));

        outage.Outage.Down = false;
        ShouldBeRefusedUnrecorded(await client.Post("/function/call_function/tally", "{}"));
        await outage.Decisions.FlushAsync(Ct);

        var ran = await client.Post("/graph/execute_graph", runGraph);
        ran.Status.ShouldBe(200, ran.Body?.ToJsonString());
        var served = await client.Post("/function/call_function/tally", "{}");
        served.Status.ShouldBe(200, served.Body?.ToJsonString());
        served.Data!["runs"]!.GetValue<int>().ShouldBe(4, "two calls before the failure and the graph's node after it ran; the refused ones did not");
    }

    [Fact]
    public async Task With_the_default_calls_still_run_while_decisions_are_lost()
    {
        var outage = new OutageServer(whenUnrecorded: null);
        await using var server = outage.Server;
        var client = server.CreateClient();
        var uri = await server.RegisterPolicyAsync("counted", CountingRuns);
        var execute = $$"""{"policy_rule_uri": "{{uri}}", "input_data": {}, "context_key": "runs"}""";
        await outage.FailLogAfterAsync(() => client.Post("/executor/local/execute_policy", execute));

        var served = await client.Post("/executor/local/execute_policy", execute);

        served.Status.ShouldBe(200, served.Body?.ToJsonString());
        served.Data!["runs"]!.GetValue<int>().ShouldBe(2);
        (await client.Get("/readyz")).Status.ShouldBe(503, "unrecorded calls are served, and readiness says so");
    }
}
