using System.Text.Json.Nodes;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>One server for the class (a Python pool start is paid once); each test deploys its own uniquely named nodes.</summary>
public sealed class GraphServerFixture : IAsyncLifetime
{
    public GridServer Server { get; private set; } = null!;
    public HttpClient Client { get; private set; } = null!;
    public string Policy { get; private set; } = "";

    public async ValueTask InitializeAsync()
    {
        // Branches_run_at_the_same_time has two workers meet in a directory under /tmp: they must share the host's /tmp.
        Server = new GridServer { Settings = new() { ["PolicyGrid:Runtime:Pool:PrivateTemp"] = "false" } };
        Client = Server.CreateClient();
        Policy = await Server.RegisterPolicyAsync("node", GraphPolicies.Node);
    }

    public async ValueTask DisposeAsync() => await Server.DisposeAsync();
}

public sealed class GraphsApiTests(GraphServerFixture fixture) : IClassFixture<GraphServerFixture>
{
    private readonly HttpClient _client = fixture.Client;
    private readonly string _run = Guid.NewGuid().ToString("N")[..6];

    private string N(string node) => $"{node}_{_run}";

    private async Task DeployNode(string node, JsonObject? parameters = null)
    {
        parameters ??= [];
        parameters["tag"] = node;
        var answer = await _client.Send(HttpMethod.Post, "/function/deployments/create/local", new JsonObject
        {
            ["name"] = N(node),
            ["policy_rule_uri"] = fixture.Policy,
            ["policy_rule_parameters"] = parameters,
        });
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
    }

    private JsonObject Graph(string name, string[] ids, (string From, string[] To)[] edges, JsonObject? metadata = null, JsonObject? inputSchema = null)
    {
        var connections = new JsonObject();
        foreach (var (from, to) in edges) connections[N(from)] = new JsonArray([.. to.Select(t => (JsonNode)N(t))]);
        return new JsonObject
        {
            ["graph_name"] = $"{name}_{_run}",
            ["graph_version"] = "1.0",
            ["graph_release_tag"] = "test",
            ["graph_function_ids"] = new JsonArray([.. ids.Select(i => (JsonNode)N(i))]),
            ["graph_connection_data"] = connections,
            ["graph_metadata"] = metadata ?? new JsonObject(),
            ["graph_search_tags"] = new JsonArray("test", name),
            ["graph_input_schema"] = inputSchema ?? new JsonObject(),
        };
    }

    private async Task<string> Create(JsonObject graph)
    {
        var answer = await _client.Send(HttpMethod.Post, "/graphs", graph);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return answer.Data!["graph_uri"]!.GetValue<string>();
    }

    private Task<Answer> Execute(string uri, JsonNode? input, bool trace = false, bool async = false) =>
        _client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = uri, ["input_data"] = input, ["trace"] = trace, ["async"] = async });

    private async Task<string> Diamond(string name, string[]? order = null, JsonObject? metadata = null)
    {
        foreach (var node in new[] { "A", "B", "C", "D" }) await DeployNode(node);
        return await Create(Graph(name, order ?? ["A", "B", "C", "D"], [("A", ["B", "C"]), ("B", ["D"]), ("C", ["D"])], metadata));
    }

    private string By(JsonNode? output) => output!["by"]!.GetValue<string>();

    [Fact]
    public async Task A_diamond_answers_the_sinks_output_and_the_join_gets_both_branches_in_order()
    {
        var uri = await Diamond("diamond");

        var answer = await Execute(uri, new JsonObject { ["ip"] = "10.0.0.1" });

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        By(answer.Data).ShouldBe("D");
        var joined = answer.Data!["got"]!.AsArray();
        joined.Select(By).ShouldBe(["B", "C"]);
        joined.ShouldAllBe(o => o!["got"]!["by"]!.GetValue<string>() == "A");
        joined[0]!["got"]!["got"]!["ip"]!.GetValue<string>().ShouldBe("10.0.0.1");
    }

    [Fact]
    public async Task A_join_receives_its_parents_in_graph_function_ids_order()
    {
        var uri = await Diamond("ordered", ["A", "C", "B", "D"]);

        var answer = await Execute(uri, new JsonObject());

        answer.Data!["got"]!.AsArray().Select(By).ShouldBe(["C", "B"]);
    }

    [Fact]
    public async Task A_chain_passes_each_output_on()
    {
        foreach (var node in new[] { "A", "B", "C" }) await DeployNode(node);
        var uri = await Create(Graph("chain", ["A", "B", "C"], [("A", ["B"]), ("B", ["C"])]));

        var answer = await Execute(uri, new JsonObject { ["n"] = 1 });

        answer.Data!.ToJsonString().ShouldBe("""{"by":"C","got":{"by":"B","got":{"by":"A","got":{"n":1},"calls":1},"calls":1},"calls":1}""");
    }

    [Fact]
    public async Task Fan_out_to_one_sink_gives_every_root_the_input_and_the_sink_every_output()
    {
        foreach (var node in new[] { "R1", "R2", "R3", "S" }) await DeployNode(node);
        var uri = await Create(Graph("fanin", ["R1", "R2", "R3", "S"], [("R1", ["S"]), ("R2", ["S"]), ("R3", ["S"])]));

        var answer = await Execute(uri, new JsonObject { ["x"] = 5 });

        var got = answer.Data!["got"]!.AsArray();
        got.Select(By).ShouldBe(["R1", "R2", "R3"]);
        got.ShouldAllBe(o => o!["got"]!["x"]!.GetValue<int>() == 5);
    }

    [Fact]
    public async Task Branches_run_at_the_same_time()
    {
        // B and C each wait until the other has started: the graph can only finish if they overlap.
        // Not in the server's data directory: that one is the server's alone (0700), out of the workers' reach.
        var meet = Directory.CreateTempSubdirectory("pg-graphs-meet-" + _run).FullName;
#pragma warning disable CA1416 // the worker user writes its marker here; these tests run on Linux
        File.SetUnixFileMode(meet, (UnixFileMode)Convert.ToInt32("777", 8));
#pragma warning restore CA1416
        await DeployNode("A");
        await DeployNode("B", new JsonObject { ["meet_dir"] = meet, ["meet_other"] = "C" });
        await DeployNode("C", new JsonObject { ["meet_dir"] = meet, ["meet_other"] = "B" });
        await DeployNode("D");
        var uri = await Create(Graph("overlap", ["A", "B", "C", "D"], [("A", ["B", "C"]), ("B", ["D"]), ("C", ["D"])]));

        var answer = await Execute(uri, new JsonObject());

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["got"]!.AsArray().Select(By).ShouldBe(["B", "C"]);
        Directory.Delete(meet, recursive: true);
    }

    [Fact]
    public async Task A_failing_branch_stops_the_graph_and_the_answer_names_the_node_and_its_error()
    {
        await DeployNode("A");
        await DeployNode("B");
        await DeployNode("C", new JsonObject { ["fail"] = true });
        await DeployNode("D");
        var uri = await Create(Graph("failing", ["A", "B", "C", "D"], [("A", ["B", "C"]), ("B", ["D"]), ("C", ["D"])]));

        var answer = await Execute(uri, new JsonObject());

        answer.Status.ShouldBe(422);
        answer.Code.ShouldBe("policy_error");
        answer.Message.ShouldContain($"'{N("C")}'");
        answer.Message.ShouldContain("node C refused");
        // D never ran: its own count starts at 1 when called directly.
        (await _client.Send(HttpMethod.Post, $"/function/call_function/{N("D")}", new JsonObject())).Data!["calls"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task A_graph_past_its_deadline_answers_504()
    {
        await DeployNode("A", new JsonObject { ["hold"] = Path.Combine(fixture.Server.DataDirectory, "never-" + _run) });
        await DeployNode("B");
        var uri = await Create(Graph("slow", ["A", "B"], [("A", ["B"])], new JsonObject { ["deadline_seconds"] = 0.5 }));

        var answer = await Execute(uri, new JsonObject());

        answer.Status.ShouldBe(504);
        answer.Code.ShouldBe("policy_timeout");
        answer.Message.ShouldContain(N("A"));
        // Let the held node go, so the worker is free for the other tests.
        await File.WriteAllTextAsync(Path.Combine(fixture.Server.DataDirectory, "never-" + _run), "", TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_node_without_a_deployed_function_is_404_naming_it_before_anything_runs()
    {
        await DeployNode("A");
        var uri = await Create(Graph("partial", ["A", "B"], [("A", ["B"])]));

        var answer = await Execute(uri, new JsonObject());

        answer.Status.ShouldBe(404);
        answer.Message.ShouldContain($"'{N("B")}'");
        (await _client.Send(HttpMethod.Post, $"/function/call_function/{N("A")}", new JsonObject())).Data!["calls"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task A_graph_of_many_undeployed_nodes_names_the_first_twenty_and_counts_the_rest()
    {
        // The 404 and the create warning named every missing node: a 190 KB answer for a large graph of undeployed nodes.
        var ids = Enumerable.Range(0, 45).Select(i => $"m{i:00}").ToArray();
        var created = await _client.Send(HttpMethod.Post, "/graphs", Graph("many", ids, [.. ids.SkipLast(1).Select(id => (id, new[] { ids[^1] }))]));
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        var uri = created.Data!["graph_uri"]!.GetValue<string>();
        var named = string.Join(", ", ids.Take(20).Select(id => $"'{N(id)}'"));

        var answer = await Execute(uri, new JsonObject());

        answer.Status.ShouldBe(404);
        answer.Message.ShouldBe($"graph '{uri}' cannot run: no function is deployed for nodes {named} and 25 more");
        created.Body!["warnings"]!.AsArray().ShouldHaveSingleItem()!.GetValue<string>().ShouldStartWith(
            $"graph '{uri}' is stored, but no function is deployed for nodes {named} and 25 more yet: executing it answers 404");
    }

    [Fact]
    public async Task A_graph_of_more_nodes_than_MaxNodes_is_refused_naming_the_count_the_limit_and_the_setting_and_nothing_is_stored()
    {
        // Only the 1 MiB body bounded a graph before: some 100,000 nodes, each named by every answer about them.
        var ids = Enumerable.Range(0, 1001).Select(i => $"n{i}").ToArray();
        var graph = Graph("huge", ids, []);

        var refused = await _client.Send(HttpMethod.Post, "/graphs", graph);

        (refused.Status, refused.Code).ShouldBe((400, "validation_failed"), refused.Body?.ToJsonString());
        refused.Message.ShouldContain("graph_function_ids: has 1001 nodes, more than the 1000 a graph may have (PolicyGrid:Graphs:MaxNodes)");
        var uri = $"huge_{_run}:1.0-test";
        (await _client.Send(HttpMethod.Get, $"/graphs/{uri}")).Status.ShouldBe(404);

        // Connections naming more nodes than a graph may have are refused the same way, not answered one error each.
        var crowded = Graph("crowded", ["A"], [.. ids.Select(id => (id, Array.Empty<string>()))]);
        var many = await _client.Send(HttpMethod.Post, "/graphs", crowded);
        (many.Status, many.Code).ShouldBe((400, "validation_failed"));
        many.Message.ShouldContain("graph_connection_data: has 1001 entries, more than the 1000 nodes a graph may have (PolicyGrid:Graphs:MaxNodes)");

        // At the limit it is stored; an update past it is refused and leaves it as it was.
        graph["graph_function_ids"] = new JsonArray([.. ids.Take(1000).Select(id => (JsonNode)N(id))]);
        graph["graph_connection_data"] = new JsonObject([.. ids.Take(999).Select(id => KeyValuePair.Create(N(id), (JsonNode?)new JsonArray(N("n999"))))]);
        (await _client.Send(HttpMethod.Post, "/graphs", graph)).Status.ShouldBe(200);
        var pushed = await _client.Send(HttpMethod.Put, $"/graphs/{uri}", new JsonObject { ["$push"] = new JsonObject { ["graph_function_ids"] = N("n1000") } });
        (pushed.Status, pushed.Code).ShouldBe((400, "validation_failed"), pushed.Body?.ToJsonString());
        pushed.Message.ShouldContain("has 1001 nodes, more than the 1000 a graph may have (PolicyGrid:Graphs:MaxNodes)");
        (await _client.Send(HttpMethod.Get, $"/graphs/{uri}")).Data!["graph_function_ids"]!.AsArray().Count.ShouldBe(1000);
    }

    [Fact]
    public async Task A_graph_stored_before_its_functions_warns_of_each_undeployed_node_until_they_are_deployed()
    {
        await DeployNode("A");
        var created = await _client.Send(HttpMethod.Post, "/graphs", Graph("early", ["A", "B", "C"], [("A", ["B"]), ("B", ["C"])]));

        created.Status.ShouldBe(200);
        var uri = created.Data!["graph_uri"]!.GetValue<string>();
        var warning = created.Body!["warnings"]!.AsArray().ShouldHaveSingleItem()!.GetValue<string>();
        warning.ShouldContain($"'{N("B")}'");
        warning.ShouldContain($"'{N("C")}'");
        warning.ShouldNotContain($"'{N("A")}'");
        (await _client.Send(HttpMethod.Get, $"/graphs/{uri}")).Body!["warnings"].ShouldBeNull(); // a read does not warn

        await DeployNode("B");
        await DeployNode("C");
        var updated = await _client.Send(HttpMethod.Put, $"/graphs/{uri}", new JsonObject { ["$set"] = new JsonObject { ["graph_description"] = "all deployed" } });

        updated.Status.ShouldBe(200);
        updated.Body!.AsObject().ContainsKey("warnings").ShouldBeFalse();
        (await Execute(uri, new JsonObject())).Status.ShouldBe(200);
        var typo = await _client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = uri, ["input_data"] = new JsonObject(), ["trce"] = true });
        typo.Status.ShouldBe(200);
        typo.Body!["warnings"]!.AsArray().Single()!.GetValue<string>().ShouldBe("'trce' is not a field of an execute_graph request and was ignored; did you mean 'trace'?");
    }

    [Fact]
    public async Task Removing_a_function_that_graphs_run_warns_naming_them_and_one_no_graph_runs_does_not()
    {
        foreach (var node in new[] { "A", "B", "loose" }) await DeployNode(node);
        var uri = await Create(Graph("wired", ["A", "B"], [("A", ["B"])]));

        var removed = await _client.Send(HttpMethod.Delete, $"/function/deployments/remove/{N("A")}");

        removed.Status.ShouldBe(200);
        removed.Body!["warnings"]!.AsArray().ShouldHaveSingleItem()!.GetValue<string>()
            .ShouldBe($"function '{N("A")}' is a node of graph(s) {uri}: running it answers 404 until a function named '{N("A")}' is deployed again");
        (await Execute(uri, new JsonObject())).Status.ShouldBe(404);
        var loose = await _client.Send(HttpMethod.Delete, $"/function/deployments/remove/{N("loose")}");
        loose.Status.ShouldBe(200);
        loose.Body!.AsObject().ContainsKey("warnings").ShouldBeFalse();
    }

    [Fact]
    public async Task Executing_an_unknown_graph_is_404_and_a_bad_request_is_400()
    {
        (await Execute("nothing:1.0-here", new JsonObject())).Status.ShouldBe(404);
        var missing = await _client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["input_data"] = new JsonObject() });
        missing.Status.ShouldBe(400);
        missing.Message.ShouldContain("graph_uri");
        (await _client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = "x:1-y", ["trace"] = "yes" })).Message.ShouldContain("trace");
    }

    [Fact]
    public async Task A_node_checks_its_input_against_its_policy_input_schema_before_its_policy_runs()
    {
        // The root node's policy wants {"ip": "<IPv4>"}; the graph itself declares no input schema.
        var guarded = await fixture.Server.StorePolicyAsync($"guarded_{_run}", GraphPolicies.Node, new JsonObject
        {
            ["policy_input_schema"] = new JsonObject { ["ip"] = new JsonObject { ["type"] = "string", ["required"] = true, ["pattern"] = @"^\d{1,3}(\.\d{1,3}){3}$" } },
        });
        var deployed = await _client.Send(HttpMethod.Post, "/function/deployments/create/local", new JsonObject
        {
            ["name"] = N("G"), ["policy_rule_uri"] = guarded, ["policy_rule_parameters"] = new JsonObject { ["tag"] = "G" },
        });
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        await DeployNode("A");
        var uri = await Create(Graph("guarded", ["G", "A"], [("G", ["A"])]));

        foreach (var (input, expected) in new (JsonNode, string)[]
        {
            (new JsonObject { ["ip"] = "not-an-ip" }, "input_data.ip: does not match"),
            (new JsonObject(), "input_data.ip: is required"),
            (new JsonArray(1, 2), "input_data: must be an object"),
        })
        {
            var answer = await Execute(uri, input);

            answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
            answer.Code.ShouldBe("validation_failed");
            answer.Message.ShouldContain($"graph node '{N("G")}' failed: {expected}");
        }
        // Neither node ran: each one's own count starts at 1, and the graph still runs on good input.
        (await _client.Send(HttpMethod.Post, $"/function/call_function/{N("A")}", new JsonObject())).Data!["calls"]!.GetValue<int>().ShouldBe(1);
        var good = await Execute(uri, new JsonObject { ["ip"] = "10.0.0.1" });
        good.Status.ShouldBe(200, good.Body?.ToJsonString());
        good.Data!["got"]!["calls"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task Input_data_is_checked_against_the_graph_input_schema()
    {
        await DeployNode("A");
        var uri = await Create(Graph("typed", ["A"], [], inputSchema: new JsonObject { ["ip"] = new JsonObject { ["type"] = "string", ["required"] = true } }));

        var bad = await Execute(uri, new JsonObject { ["ip"] = 7 });

        bad.Status.ShouldBe(400);
        bad.Message.ShouldContain("input_data.ip");
        (await Execute(uri, new JsonObject { ["ip"] = "10.0.0.1" })).Status.ShouldBe(200);
    }

    [Fact]
    public async Task Trace_returns_each_nodes_input_output_and_duration_beside_the_result()
    {
        var uri = await Diamond("traced");

        var answer = await Execute(uri, new JsonObject { ["q"] = 1 }, trace: true);

        By(answer.Data!["result"]).ShouldBe("D");
        var trace = answer.Data!["trace"]!.AsArray();
        trace.Select(t => t!["node"]!.GetValue<string>()).Order().ShouldBe([N("A"), N("B"), N("C"), N("D")]);
        var a = trace.Single(t => t!["node"]!.GetValue<string>() == N("A"))!;
        a["input"]!.ToJsonString().ShouldBe("""{"q":1}""");
        By(a["output"]).ShouldBe("A");
        a["started_at"]!.GetValue<string>().ShouldEndWith("Z");
        trace.ShouldAllBe(t => t!["duration_ms"]!.GetValue<double>() >= 0);
    }

    [Fact]
    public async Task An_async_execution_answers_an_id_at_once_and_the_result_later()
    {
        var uri = await Diamond("later");

        var started = await Execute(uri, new JsonObject(), async: true);
        var id = started.Data!["execution_id"]!.GetValue<string>();

        var giveUp = DateTime.UtcNow.AddSeconds(20);
        Answer state;
        do
        {
            state = await _client.Send(HttpMethod.Get, $"/graph/executions/{id}");
            if (state.Data!["status"]!.GetValue<string>() != "running") break;
            await Task.Delay(20, TestContext.Current.CancellationToken);
        } while (DateTime.UtcNow < giveUp);

        state.Data!["status"]!.GetValue<string>().ShouldBe("succeeded", state.Body?.ToJsonString());
        By(state.Data!["result"]).ShouldBe("D");
        state.Data!["error"]!.GetValue<string>().ShouldBe("");
        state.Data!["error_code"]!.GetValue<string>().ShouldBe("", "every field of the record is there, empty when unused");
        (await _client.Send(HttpMethod.Get, "/graph/executions/nope")).Status.ShouldBe(404);
    }

    private async Task<JsonArray> Decisions(JsonObject filter)
    {
        var log = await _client.Send(HttpMethod.Post, "/decisions/query", filter);
        log.Status.ShouldBe(200, log.Body?.ToJsonString());
        return log.Data!.AsArray();
    }

    [Fact]
    public async Task Each_node_run_is_recorded_once_with_the_graph_and_the_execution_id_the_answer_names()
    {
        var uri = await Diamond("audited");

        var answer = await Execute(uri, new JsonObject { ["ip"] = "10.0.0.1" });

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        var execution = answer.Header("X-PolicyGrid-Execution-Id");
        execution.ShouldNotBeNullOrEmpty();
        var decisions = await Decisions(new JsonObject { ["execution_id"] = execution });
        decisions.Select(d => d!["function_id"]!.GetValue<string>()).Order().ToArray().ShouldBe(new[] { N("A"), N("B"), N("C"), N("D") }, "one record per node run, no more");
        decisions.ShouldAllBe(d => d!["graph_id"]!.GetValue<string>() == uri && d["kind"]!.GetValue<string>() == "function_call"
            && d["caller"]!.GetValue<string>() == "anonymous" && d["policy_rule_uri"]!.GetValue<string>() == fixture.Policy
            && d["bundle_sha256"]!.GetValue<string>().Length == 64 && d["status"]!.GetValue<int>() == 200);
        (await Decisions(new JsonObject { ["graph_id"] = uri })).Count.ShouldBe(4);
    }

    [Fact]
    public async Task A_failing_node_is_recorded_as_an_error_and_the_nodes_that_did_not_run_are_not()
    {
        await DeployNode("A");
        await DeployNode("B", new JsonObject { ["fail"] = true });
        var uri = await Create(Graph("audited_failing", ["A", "B"], [("A", ["B"])]));

        var answer = await Execute(uri, new JsonObject());
        answer.Status.ShouldBe(422);

        var decisions = await Decisions(new JsonObject { ["graph_id"] = uri });
        decisions.Count.ShouldBe(2);
        // The failed run's answer names its id too (the error envelope used to drop the header), so its records are found by it.
        decisions.Select(d => d!["execution_id"]!.GetValue<string>()).Distinct().ShouldHaveSingleItem().ShouldBe(answer.Header("X-PolicyGrid-Execution-Id"));
        var failed = decisions.Single(d => d!["function_id"]!.GetValue<string>() == N("B"))!;
        failed["outcome"]!.GetValue<string>().ShouldBe("error");
        failed["status"]!.GetValue<int>().ShouldBe(422);
        failed["graph_id"]!.GetValue<string>().ShouldBe(uri);
    }

    [Fact]
    public async Task A_run_refused_before_any_node_runs_is_one_graph_run_record_and_a_run_that_ran_is_none()
    {
        await DeployNode("A");
        var uri = await Create(Graph("refused", ["A"], [], inputSchema: new JsonObject { ["ip"] = new JsonObject { ["type"] = "string", ["required"] = true } }));
        var unknown = $"ghost_{_run}:1.0-test";

        (await Execute(uri, new JsonObject { ["ip"] = 7 })).Status.ShouldBe(400);
        (await Execute(unknown, new JsonObject())).Status.ShouldBe(404);
        (await Execute(uri, new JsonObject { ["ip"] = "10.0.0.1" })).Status.ShouldBe(200);

        var refused = (await Decisions(new JsonObject { ["graph_id"] = uri, ["kind"] = "graph_run" })).ShouldHaveSingleItem()!;
        refused["status"]!.GetValue<int>().ShouldBe(400);
        refused["error_code"]!.GetValue<string>().ShouldBe("validation_failed");
        refused["outcome"]!.GetValue<string>().ShouldBe("error");
        refused["caller"]!.GetValue<string>().ShouldBe("anonymous");
        refused["input_sha256"]!.GetValue<string>().Length.ShouldBe(64);
        var missing = (await Decisions(new JsonObject { ["graph_id"] = unknown })).ShouldHaveSingleItem()!;
        missing["kind"]!.GetValue<string>().ShouldBe("graph_run");
        missing["status"]!.GetValue<int>().ShouldBe(404);
        // The run that ran is its node's record only.
        (await Decisions(new JsonObject { ["graph_id"] = uri })).Count.ShouldBe(2);
    }

    [Fact]
    public async Task A_run_with_a_node_whose_policy_is_deprecated_runs_and_answers_a_Deprecation_header()
    {
        var policy = await fixture.Server.RegisterPolicyAsync("dated_" + _run, GraphPolicies.Node);
        await DeployNode("A");
        var dated = await _client.Send(HttpMethod.Post, "/function/deployments/create/local", new JsonObject
        {
            ["name"] = N("B"), ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = new JsonObject { ["tag"] = "B" },
        });
        dated.Status.ShouldBe(200, dated.Body?.ToJsonString());
        var uri = await Create(Graph("dated", ["A", "B"], [("A", ["B"])]));
        var only = await Create(Graph("undated", ["A"], []));
        (await _client.Send(HttpMethod.Put, $"/policy/{policy}", new JsonObject { ["$set"] = new JsonObject { ["status"] = "deprecated" } })).Status.ShouldBe(200);

        var answer = await Execute(uri, new JsonObject());
        var started = await Execute(uri, new JsonObject(), async: true);
        var active = await Execute(only, new JsonObject());

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        By(answer.Data).ShouldBe("B");
        answer.Header("Deprecation").ShouldBe("true", "a graph running a deprecated policy answered as if all were active");
        started.Status.ShouldBe(200);
        started.Header("Deprecation").ShouldBe("true");
        active.Status.ShouldBe(200);
        active.Header("Deprecation").ShouldBeNull();
    }

    [Fact]
    public async Task The_diagram_is_a_mermaid_flowchart()
    {
        var uri = await Diamond("drawn");

        using var response = await _client.GetAsync($"/graphs/{uri}/diagram", TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);

        response.Content.Headers.ContentType!.MediaType.ShouldBe("text/vnd.mermaid");
        text.ShouldContain("flowchart");
        text.ShouldContain(N("A"));
        text.ShouldContain(N("D"));
    }

    [Fact]
    public async Task Graphs_are_read_updated_queried_and_deleted()
    {
        var uri = await Diamond("crud");

        (await _client.Send(HttpMethod.Get, $"/graphs/{uri}")).Data!["graph_function_ids"]!.AsArray().Count.ShouldBe(4);
        var updated = await _client.Send(HttpMethod.Put, $"/graphs/{uri}", new JsonObject { ["$set"] = new JsonObject { ["graph_description"] = "four nodes" } });
        updated.Data!["graph_description"]!.GetValue<string>().ShouldBe("four nodes");
        var found = await _client.Send(HttpMethod.Post, "/graphs/query", new JsonObject { ["graph_search_tags"] = "crud" });
        found.Data!.AsArray().Select(g => g!["graph_uri"]!.GetValue<string>()).ShouldBe([uri]);
        (await _client.Send(HttpMethod.Delete, $"/graphs/{uri}")).Data!["graph_uri"]!.GetValue<string>().ShouldBe(uri);
        (await _client.Send(HttpMethod.Get, $"/graphs/{uri}")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task Concurrent_updates_without_if_match_all_succeed_and_every_inc_counts_but_a_stale_if_match_is_a_409()
    {
        var uri = await Create(Graph("counted", ["A", "B"], [("A", ["B"])]));
        var created = await _client.Send(HttpMethod.Get, $"/graphs/{uri}");

        var answers = await Task.WhenAll(Enumerable.Range(0, 30).Select(_ => _client.Put($"/graphs/{uri}", """{"$inc": {"graph_metadata.hits": 1}}""")));

        answers.Select(a => a.Status).ShouldAllBe(s => s == 200, string.Join("\n", answers.Where(a => a.Status != 200).Select(a => a.Body?.ToJsonString())));
        (await _client.Send(HttpMethod.Get, $"/graphs/{uri}")).Data!["graph_metadata"]!["hits"]!.GetValue<int>().ShouldBe(30);
        var stale = await _client.Put($"/graphs/{uri}", """{"$inc": {"graph_metadata.hits": 1}}""", ifMatch: created.Header("ETag"));
        stale.Status.ShouldBe(409);
        stale.Message!.ShouldContain("If-Match");
    }

    [Fact]
    public async Task Node_ids_no_function_could_be_deployed_under_are_a_400_naming_each()
    {
        var graph = Graph("bad_ids", [], []);
        graph["graph_function_ids"] = new JsonArray("a b", new string('x', 300), "\u0000", "a/b");
        graph["graph_connection_data"] = new JsonObject();

        var created = await _client.Send(HttpMethod.Post, "/graphs", graph);

        created.Status.ShouldBe(400, created.Body?.ToJsonString());
        created.Code.ShouldBe("validation_failed");
        var paths = created.Body!["errors"]!.AsArray().Select(e => e!["path"]!.GetValue<string>()).ToList();
        paths.ShouldContain("graph_function_ids[0]");
        paths.ShouldContain("graph_function_ids[1]");
        paths.ShouldContain("graph_function_ids[2]");
        paths.ShouldContain("graph_function_ids[3]");
        created.Message.ShouldContain("whitespace");
        created.Message.ShouldContain("at most 256");
        created.Message.ShouldContain("must not contain '/'");
        (await _client.Send(HttpMethod.Post, "/graphs/query", new JsonObject { ["graph_name"] = graph["graph_name"]!.DeepClone() })).Data!.AsArray().ShouldBeEmpty();
    }

    public static TheoryData<string, string, string, string> BadShapes => new()
    {
        // name, graph_function_ids, graph_connection_data (node names get the run suffix), and a word the message must hold
        { "cycle", "A,B,C", "A>B;B>C;C>A", "cycle" },
        { "two sinks", "A,B,C", "A>B,C", "B" },
        { "unknown node", "A,B", "A>B;Z>B", "Z" },
        { "unknown child", "A,B", "A>B,Q", "Q" },
        { "self-loop", "A,B", "A>A,B", "A" },
        { "empty", "", "", "graph_function_ids" },
    };

    [Theory]
    [MemberData(nameof(BadShapes))]
    public async Task Bad_shapes_are_rejected_at_create_and_at_update_naming_the_nodes(string name, string ids, string edges, string named)
    {
        var nodes = ids.Length == 0 ? [] : ids.Split(',');
        var connections = edges.Length == 0 ? [] : edges.Split(';').Select(e => (e.Split('>')[0], e.Split('>')[1].Split(','))).ToArray();
        var graph = Graph("bad_" + name.Replace(' ', '_'), nodes, connections);

        var created = await _client.Send(HttpMethod.Post, "/graphs", graph);

        created.Status.ShouldBe(400, created.Body?.ToJsonString());
        created.Message.ShouldContain(named.Length == 1 ? N(named) : named);
        (await _client.Send(HttpMethod.Post, "/graphs/query", new JsonObject { ["graph_name"] = graph["graph_name"]!.DeepClone() })).Data!.AsArray().ShouldBeEmpty();

        if (nodes.Length == 0) return;
        // The same shape through an update of a good graph: refused, and the stored graph is unchanged.
        var good = Graph("good_" + name.Replace(' ', '_'), ["A", "B"], [("A", ["B"])]);
        var uri = await Create(good);
        var update = await _client.Send(HttpMethod.Put, $"/graphs/{uri}", new JsonObject
        {
            ["$set"] = new JsonObject { ["graph_function_ids"] = graph["graph_function_ids"]!.DeepClone(), ["graph_connection_data"] = graph["graph_connection_data"]!.DeepClone() },
        });
        update.Status.ShouldBe(400);
        (await _client.Send(HttpMethod.Get, $"/graphs/{uri}")).Data!["graph_function_ids"]!.AsArray().Count.ShouldBe(2);
    }

    [Theory]
    [InlineData("1e20")]
    [InlineData("9223372036854775808")]
    public async Task A_max_attempts_too_large_for_an_integer_is_refused_as_out_of_range_not_as_no_integer(string attempts)
    {
        var graph = Graph("huge_retry", ["A"], [], (JsonObject)JsonNode.Parse($$$"""{"node_retry": {"max_attempts": {{{attempts}}}}}""")!);

        var created = await _client.Send(HttpMethod.Post, "/graphs", graph);

        created.Status.ShouldBe(400, created.Body?.ToJsonString());
        created.Message.ShouldContain("graph_metadata.node_retry.max_attempts");
        created.Message.ShouldContain($"is out of range: must be an integer from 1 to {int.MaxValue}, not {attempts}");
        created.Message.ShouldNotContain("must be an integer, not");
    }

    [Theory]
    [InlineData("""{"deadline_seconds": "30"}""", "graph_metadata.deadline_seconds")]
    [InlineData("""{"deadline_seconds": -1}""", "graph_metadata.deadline_seconds")]
    [InlineData("""{"deadline_seconds": 1e-9}""", "graph_metadata.deadline_seconds")]
    [InlineData("""{"node_retry": 3}""", "graph_metadata.node_retry")]
    [InlineData("""{"node_retry": {"backoff_seconds": 1}}""", "graph_metadata.node_retry.max_attempts")]
    [InlineData("""{"node_retry": {"max_attempts": 0}}""", "graph_metadata.node_retry.max_attempts")]
    [InlineData("""{"node_retry": {"max_attempts": "3"}}""", "graph_metadata.node_retry.max_attempts")]
    [InlineData("""{"node_retry": {"max_attempts": 2, "backoff_seconds": -0.5}}""", "graph_metadata.node_retry.backoff_seconds")]
    public async Task Run_settings_in_graph_metadata_are_checked_when_the_graph_is_written(string metadata, string named)
    {
        var graph = Graph("settings", ["A"], [], (JsonObject)JsonNode.Parse(metadata)!);

        var created = await _client.Send(HttpMethod.Post, "/graphs", graph);

        created.Status.ShouldBe(400, created.Body?.ToJsonString());
        created.Body!["errors"]!.AsArray().Select(e => e!["path"]!.GetValue<string>()).ShouldContain(named);
        (await _client.Send(HttpMethod.Post, "/graphs/query", new JsonObject { ["graph_name"] = graph["graph_name"]!.DeepClone() })).Data!.AsArray().ShouldBeEmpty();

        graph["graph_metadata"] = new JsonObject();
        var uri = await Create(graph);
        var update = await _client.Send(HttpMethod.Put, $"/graphs/{uri}", new JsonObject { ["$set"] = new JsonObject { ["graph_metadata"] = JsonNode.Parse(metadata) } });
        update.Status.ShouldBe(400);
        update.Message.ShouldContain(named);
        (await _client.Send(HttpMethod.Get, $"/graphs/{uri}")).Data!["graph_metadata"]!.AsObject().ShouldBeEmpty();
    }

    [Fact]
    public async Task A_node_retry_backoff_longer_than_any_deadline_waits_out_the_runs_deadline_instead_of_failing_with_500()
    {
        await DeployNode("A", new JsonObject { ["fail"] = true });
        var uri = await Create(Graph("patient", ["A"], [], new JsonObject
        {
            ["deadline_seconds"] = 0.5,
            ["node_retry"] = new JsonObject { ["max_attempts"] = 2, ["backoff_seconds"] = 1e20 },
        }));

        var answer = await Execute(uri, new JsonObject());

        answer.Status.ShouldBe(504, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("policy_timeout");
    }

    [Theory]
    [InlineData("1e-9", "one tick of the clock")]
    [InlineData("0", "greater than 0")]
    [InlineData("-3", "greater than 0")]
    [InlineData("\"30\"", "a number of seconds, not a JSON string")]
    public async Task An_execute_timeout_the_clock_cannot_hold_is_a_400_naming_it(string timeout, string says)
    {
        await DeployNode("A");
        var uri = await Create(Graph("timed", ["A"], []));

        var answer = await _client.Send(HttpMethod.Post, "/graph/execute_graph",
            JsonNode.Parse($$"""{"graph_uri": "{{uri}}", "input_data": {}, "timeout_seconds": {{timeout}}}"""));

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message.ShouldContain("timeout_seconds");
        answer.Message.ShouldContain(says);
        // Past MaxDeadlineSeconds the deadline is held to it, as documented, rather than refused as 'no number'.
        var huge = await _client.Send(HttpMethod.Post, "/graph/execute_graph",
            JsonNode.Parse($$"""{"graph_uri": "{{uri}}", "input_data": {}, "timeout_seconds": 1e30}"""));
        huge.Status.ShouldBe(200, huge.Body?.ToJsonString());
    }

    [Fact]
    public async Task A_graph_with_a_node_whose_policy_is_retired_is_410_naming_it_before_anything_runs()
    {
        var policy = await fixture.Server.RegisterPolicyAsync("retiring_" + _run, GraphPolicies.Node);
        await DeployNode("A");
        var retiring = await _client.Send(HttpMethod.Post, "/function/deployments/create/local", new JsonObject
        {
            ["name"] = N("B"), ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = new JsonObject { ["tag"] = "B" },
        });
        retiring.Status.ShouldBe(200, retiring.Body?.ToJsonString());
        var uri = await Create(Graph("retired", ["A", "B"], [("A", ["B"])]));
        (await _client.Send(HttpMethod.Put, $"/policy/{policy}", new JsonObject { ["$set"] = new JsonObject { ["status"] = "retired" } })).Status.ShouldBe(200);

        var answer = await Execute(uri, new JsonObject());

        answer.Status.ShouldBe(410, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("retired");
        answer.Message.ShouldContain($"'{N("B")}'");
        var refused = (await Decisions(new JsonObject { ["graph_id"] = uri })).ShouldHaveSingleItem()!;
        refused["kind"]!.GetValue<string>().ShouldBe("graph_run");
        refused["status"]!.GetValue<int>().ShouldBe(410);
        refused["error_code"]!.GetValue<string>().ShouldBe("retired");
        // A never ran: its own count starts at 1 when called directly.
        (await _client.Send(HttpMethod.Post, $"/function/call_function/{N("A")}", new JsonObject())).Data!["calls"]!.GetValue<int>().ShouldBe(1);
    }
}
