using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>A registry with tokens (the caller it records is the token's name) and a short wait beyond a call's deadline.</summary>
public sealed class NodeFacingServer : GridServer
{
    public const string Operator = "node-facing-operator-token-0123456789";

    public NodeFacingServer() => Settings = new()
    {
        ["PolicyGrid:Auth:Tokens:0:Name"] = "ops",
        ["PolicyGrid:Auth:Tokens:0:Token"] = Operator,
        ["PolicyGrid:Auth:Tokens:0:Scopes:0"] = "read",
        ["PolicyGrid:Auth:Tokens:0:Scopes:1"] = "write",
        ["PolicyGrid:Runtime:RemoteExecutors:Overhead"] = "00:00:01",
        ["PolicyGrid:Runtime:RemoteExecutors:MaxAnswerBytes"] = MaxAnswerBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    public const int MaxAnswerBytes = 64 * 1024;
}

/// <summary>
/// What the registry makes of a remote executor node's answers of every kind, over real HTTP on loopback:
/// a scripted node stands in for a node, a proxy in front of one, or one that dies mid-call.
/// </summary>
public sealed class RemoteExecutorAnswersTests(NodeFacingServer registry) : IClassFixture<NodeFacingServer>
{
    private readonly HttpClient client = registry.ClientWith(NodeFacingServer.Operator);

    private const string Policy = "remote_only:1.0-t";

    private static string Execute(string extra = "") => $$"""{"policy_rule_uri": "{{Policy}}", "input_data": {"ip": "10.0.0.1"}{{extra}}}""";

    private async Task<string> RegisterAsync(ScriptedNode node, string status = "healthy")
    {
        var id = Unique("scripted");
        var created = await client.Post("/executor", $$"""{"executor_id": "{{id}}", "executor_host_uri": "{{node.BaseUri}}", "executor_status": "{{status}}"}""");
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        return id;
    }

    private async Task<string> StatusOf(string id) => (await client.Get($"/executor/{id}")).Data!["executor_status"]!.GetValue<string>();

    /// <summary>The registry still serves: its own executor runs a call's validation and the executor document reads.</summary>
    private async Task StillServes(string id)
    {
        (await client.Get($"/executor/{id}")).Status.ShouldBe(200);
        (await client.Post("/executor/local/execute_policy", """{"policy_rule_uri": "absent:1.0-t", "input_data": {}}""")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task A_node_that_drops_every_delivery_of_a_call_gets_it_again_with_its_call_id_and_the_caller_hears_it_may_have_run_once()
    {
        using var node = new ScriptedNode(NodeAnswer.Drop);
        var id = await RegisterAsync(node);

        var managed = await client.Post($"/executor/{id}/management", $$$"""{"policy_rule_uri": "{{{Policy}}}", "action": "rotate_keys", "data": {}}""");

        managed.Status.ShouldBe(503, managed.Body?.ToJsonString());
        managed.Code.ShouldBe("backend_unavailable");
        managed.Message!.ShouldContain($"executor node {node.BaseUri}/ dropped the call before answering");
        managed.Message!.ShouldContain("also when it was sent again with the same X-PolicyGrid-Call-Id; it may have run there, at most once");
        // Sent again (RemoteExecutors:ConnectRetries, 2): the call id makes a node run it at most once (RemoteCallIdTests).
        node.Requests.ShouldBe(3);
        (await StatusOf(id)).ShouldBe("unhealthy");
        await StillServes(id);
    }

    [Theory]
    [InlineData(404, "text/html", "<html>nginx: not found</html>", "answered 404 Not Found without a PolicyGrid error envelope")]
    [InlineData(400, "text/plain", "bad", "answered 400 Bad Request without a PolicyGrid error envelope")]
    [InlineData(405, "application/json", """{"detail": "method not allowed"}""", "answered 405 Method Not Allowed without a PolicyGrid error envelope")]
    public async Task A_4xx_that_is_not_a_nodes_envelope_is_a_502_naming_the_node_not_the_callers_mistake(int status, string type, string body, string expected)
    {
        using var node = new ScriptedNode(new NodeAnswer(status, body, ContentType: type));
        var id = await RegisterAsync(node);

        var answer = await client.Post($"/executor/{id}/execute_policy", Execute());

        answer.Status.ShouldBe(502, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("backend_error");
        answer.Message!.ShouldContain($"executor node {node.BaseUri}/ {expected}");
        await StillServes(id);
    }

    [Theory]
    [InlineData(404, """{"success": false, "message": "no such route: POST /wrong/execute_policy", "code": "not_found"}""")]
    [InlineData(405, """{"success": false, "message": "POST is not allowed on /policy/execute_policy; allowed: DELETE, GET, HEAD, PUT", "code": "bad_request"}""")]
    public async Task A_node_answering_that_it_has_no_such_route_is_a_502_saying_the_executor_uri_looks_wrong_for_calls_and_functions(int status, string body)
    {
        // An executor registered with a path prefix its node does not have (http://node:port/wrong/) answered every call
        // with the node's "no such route" 404 not_found, as if the policy were missing.
        using var node = new ScriptedNode(new NodeAnswer(status, body));
        var id = await RegisterAsync(node);
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");

        foreach (var (route, request) in new[] { ("execute_policy", Execute()), ("management", $$$"""{"policy_rule_uri": "{{{Policy}}}", "action": "get_state", "data": {}}""") })
        {
            var answer = await client.Post($"/executor/{id}/{route}", request);
            (answer.Status, answer.Code).ShouldBe((502, "backend_error"), answer.Body?.ToJsonString());
            answer.Message!.ShouldStartWith($"executor node {node.BaseUri}/ answered {status} ");
            answer.Message!.ShouldContain("it has no such route, so its executor_host_uri looks wrong; it must be the root address of a PolicyGrid executor node");
        }

        var deployed = await client.Post($"/function/deployments/create/{id}", $$"""{"name": "{{Unique("misrouted")}}", "policy_rule_uri": "{{uri}}"}""");
        (deployed.Status, deployed.Code).ShouldBe((502, "backend_error"), deployed.Body?.ToJsonString());
        deployed.Message!.ShouldContain("its executor_host_uri looks wrong");

        var job = await client.Post($"/jobs/submit/{id}", $$$"""{"name": "j", "policy_rule_uri": "{{{uri}}}", "inputs": {"ip": "10.0.0.1"}}""");
        job.Status.ShouldBe(200, job.Body?.ToJsonString());
        var ended = await client.Get($"/jobs/{job.Data!["job_id"]!.GetValue<string>()}?wait=30");
        ended.Data!["status"]!.GetValue<string>().ShouldBe("failed");
        ended.Data!["error"]!.GetValue<string>().ShouldContain("its executor_host_uri looks wrong");
        (await StatusOf(id)).ShouldBe("healthy");
        await StillServes(id);
    }

    [Fact]
    public async Task A_function_node_answering_4xx_without_an_envelope_is_a_502_not_its_status_as_backend_error()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        using var node = new ScriptedNode(new NodeAnswer(404, "<html>nginx: not found</html>", ContentType: "text/html"));
        var id = await RegisterAsync(node);

        var deployed = await client.Post($"/function/deployments/create/{id}", $$"""{"name": "{{Unique("proxied")}}", "policy_rule_uri": "{{uri}}"}""");

        (deployed.Status, deployed.Code).ShouldBe((502, "backend_error"), deployed.Body?.ToJsonString());
        deployed.Message!.ShouldContain("answered 404 without a PolicyGrid error envelope; is executor_host_uri the root address of a PolicyGrid executor node?");
    }

    [Theory]
    [InlineData(200, """{"success": true, "data": {"allowed": true}, "data": {"allowed": false}}""", "answered 200 without a result envelope")]
    [InlineData(200, """{"success": true, "data": {"allowed": true, "allowed": false}}""", "answered 200 without a result envelope")]
    [InlineData(400, """{"success": false, "code": "bad_request", "code": "x", "message": "m"}""", "answered 400 Bad Request without a PolicyGrid error envelope")]
    [InlineData(200, """{"success": true, "data": {"s": "\ud800"}}""", "answered 200 without a result envelope")]
    [InlineData(200, """{"success": true, "data": {"\udc00": 1}}""", "answered 200 without a result envelope")]
    public async Task An_answer_with_a_key_twice_or_a_lone_surrogate_is_a_502_naming_the_node_not_a_500(int status, string body, string expected)
    {
        using var node = new ScriptedNode(new NodeAnswer(status, body, ContentType: "application/json"));
        var id = await RegisterAsync(node);

        var answer = await client.Post($"/executor/{id}/execute_policy", Execute());

        answer.Status.ShouldBe(502, answer.Body?.ToJsonString());
        answer.Message!.ShouldContain($"executor node {node.BaseUri}/ {expected}");
        await StillServes(id);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task An_answer_over_MaxAnswerBytes_is_a_502_and_is_not_read_whole(bool withLength)
    {
        var huge = $$$"""{"success": true, "data": {"blob": "{{{new string('x', NodeFacingServer.MaxAnswerBytes * 4)}}}"}}""";
        using var node = new ScriptedNode(new NodeAnswer(200, huge, WithoutLength: !withLength));
        var id = await RegisterAsync(node);

        var answer = await client.Post($"/executor/{id}/execute_policy", Execute());

        answer.Status.ShouldBe(502, answer.Body?.ToJsonString()[..Math.Min(300, answer.Body?.ToJsonString().Length ?? 0)]);
        answer.Code.ShouldBe("backend_error");
        answer.Message.ShouldBe($"executor node {node.BaseUri}/ answered 200 with more than {NodeFacingServer.MaxAnswerBytes} bytes (RemoteExecutors:MaxAnswerBytes); the answer was not read");
        await StillServes(id);
    }

    [Fact]
    public async Task A_redirect_is_not_followed_and_is_a_502_naming_where_it_pointed()
    {
        using var node = new ScriptedNode(NodeAnswer.Empty);
        node.Answer = new NodeAnswer(302, "", Headers: [("Location", node.BaseUri + "/elsewhere")]);
        var id = await RegisterAsync(node);

        var answer = await client.Post($"/executor/{id}/execute_policy", Execute());

        answer.Status.ShouldBe(502, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("backend_error");
        answer.Message!.ShouldContain($"answered 302 Found pointing at {node.BaseUri}/elsewhere; redirects are not followed");
        node.Requests.ShouldBe(1); // followed, the POST would have come back as a GET to /elsewhere
        await StillServes(id);
    }

    [Fact]
    public async Task A_node_refusing_this_servers_token_says_the_node_refused_this_server_and_which_setting_holds_the_token()
    {
        using var node = new ScriptedNode(new NodeAnswer(401, """{"success": false, "message": "a bearer token is required", "code": "unauthorized"}"""));
        var id = await RegisterAsync(node);

        var answer = await client.Post($"/executor/{id}/execute_policy", Execute());

        answer.Status.ShouldBe(401, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("unauthorized");
        answer.Message.ShouldBe($"executor node {node.BaseUri}/ refused this server's call (401 Unauthorized: a bearer token is required); " +
            "the token this server sends to nodes is PolicyGrid:Runtime:RemoteExecutors:Token");
        await StillServes(id);
    }

    [Fact]
    public async Task The_warnings_of_a_nodes_success_reach_the_caller_once_beside_the_registrys_own()
    {
        using var node = new ScriptedNode(new NodeAnswer(200,
            """{"success": true, "data": {"allowed": true}, "warnings": ["'parameters.limitt' is not in the policy's policy_parameters_schema", 7]}"""));
        var id = await RegisterAsync(node);

        var answer = await client.Post($"/executor/{id}/execute_policy", Execute(""", "paramters": {}"""));

        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Body!["warnings"]!.AsArray().Select(w => w!.GetValue<string>()).ShouldBe([
            "'paramters' is not a field of an execute_policy request and was ignored; did you mean 'parameters'?",
            "'parameters.limitt' is not in the policy's policy_parameters_schema",
        ]);
    }

    [Fact]
    public async Task The_nodes_field_errors_pass_through_with_its_message()
    {
        using var node = new ScriptedNode(new NodeAnswer(400,
            """{"success": false, "message": "input_data.ip: does not match ^x$", "code": "validation_failed", "errors": [{"path": "input_data.ip", "message": "does not match ^x$"}]}"""));
        var id = await RegisterAsync(node);

        var answer = await client.Post($"/executor/{id}/execute_policy", Execute());

        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("validation_failed");
        answer.Message.ShouldBe("input_data.ip: does not match ^x$");
        var error = answer.Body!["errors"]!.AsArray().Single()!;
        error["path"]!.GetValue<string>().ShouldBe("input_data.ip");
        error["message"]!.GetValue<string>().ShouldBe("does not match ^x$");
        await StillServes(id);
    }

    [Fact]
    public async Task A_retry_after_given_as_a_date_reaches_the_caller_in_seconds()
    {
        using var node = new ScriptedNode(new NodeAnswer(429, """{"success": false, "message": "the worker pool's queue is full", "code": "overloaded"}""",
            Headers: [("Retry-After", DateTimeOffset.UtcNow.AddSeconds(120).ToString("R"))]));
        var id = await RegisterAsync(node);

        var answer = await client.Post($"/executor/{id}/execute_policy", Execute());

        answer.Status.ShouldBe(429);
        answer.Code.ShouldBe("overloaded");
        int.Parse(answer.Header("Retry-After")!).ShouldBeInRange(100, 121);
        await StillServes(id);
    }

    private const string NodeStoreDown = """{"success": false, "message": "the server's storage failed (disk I/O error); retry", "code": "backend_unavailable"}""";

    [Fact]
    public async Task A_nodes_own_503_is_a_503_naming_the_node_with_its_message_and_retry_after_not_a_502_and_the_node_stays_healthy()
    {
        // It was a 502 backend_error "executor node ... failed with 503", without the node's Retry-After: a bad gateway
        // where the node had said to come back later.
        using var node = new ScriptedNode(new NodeAnswer(503, NodeStoreDown, Headers: [("Retry-After", "7")]));
        var id = await RegisterAsync(node);

        foreach (var (route, request) in new[] { ("execute_policy", Execute()), ("management", $$$"""{"policy_rule_uri": "{{{Policy}}}", "action": "get_state", "data": {}}""") })
        {
            var answer = await client.Post($"/executor/{id}/{route}", request);
            (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString());
            answer.Message.ShouldBe($"executor node {node.BaseUri}/ is unavailable: the server's storage failed (disk I/O error); retry");
            answer.Header("Retry-After").ShouldBe("7");
        }
        // Sent once each (the node's ledger keeps no 503, so a retry here would run anew), and the node answered: it is
        // not marked unhealthy, so the next call is forwarded and hears the node again, not a fast refusal.
        node.Requests.ShouldBe(2);
        (await StatusOf(id)).ShouldBe("healthy");
        node.Answer = new NodeAnswer(200, """{"success": true, "data": {"allowed": true}}""");
        (await client.Post($"/executor/{id}/execute_policy", Execute())).Status.ShouldBe(200);
    }

    [Fact]
    public async Task A_503_without_a_nodes_envelope_is_a_503_saying_so_and_marks_the_executor_unhealthy()
    {
        using var node = new ScriptedNode(new NodeAnswer(503, "<html>no healthy upstream</html>", ContentType: "text/html", Headers: [("Retry-After", "3")]));
        var id = await RegisterAsync(node);

        var answer = await client.Post($"/executor/{id}/execute_policy", Execute());

        (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString());
        answer.Message.ShouldBe($"executor node {node.BaseUri}/ is unavailable: it answered 503 Service Unavailable without a PolicyGrid error envelope (a proxy in front of a node that is down?)");
        answer.Header("Retry-After").ShouldBe("3");
        (await StatusOf(id)).ShouldBe("unhealthy");
    }

    [Fact]
    public async Task A_function_nodes_own_503_is_a_503_with_its_message_and_retry_after()
    {
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        using var node = new ScriptedNode(new NodeAnswer(200, """{"success": true, "data": {}}"""));
        var id = await RegisterAsync(node);
        var name = Unique("unavailable");
        (await client.Post($"/function/deployments/create/{id}", $$"""{"name": "{{name}}", "policy_rule_uri": "{{uri}}"}""")).Status.ShouldBe(200);
        node.Answer = new NodeAnswer(503, NodeStoreDown, Headers: [("Retry-After", "9")]);

        var answer = await client.Post($"/function/call_function/{name}", """{"ip": "10.0.0.1"}""");

        (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString());
        answer.Message.ShouldBe($"executor node {node.BaseUri}/ is unavailable: the server's storage failed (disk I/O error); retry");
        answer.Header("Retry-After").ShouldBe("9");
    }

    [Fact]
    public async Task An_unhealthy_executor_that_answers_its_probe_with_a_refusal_is_marked_healthy_again()
    {
        using var node = new ScriptedNode(new NodeAnswer(404, """{"success": false, "message": "no policy 'remote_only:1.0-t' is registered", "code": "not_found"}"""));
        var id = await RegisterAsync(node, status: "unhealthy");

        var probe = await client.Post($"/executor/{id}/execute_policy", Execute());

        probe.Status.ShouldBe(404, probe.Body?.ToJsonString());
        probe.Message!.ShouldContain("no policy 'remote_only:1.0-t' is registered");
        (await StatusOf(id)).ShouldBe("healthy"); // the node answered: the next call is forwarded, not refused fast
        node.Answer = new NodeAnswer(200, """{"success": true, "data": {"allowed": true}}""");
        (await client.Post($"/executor/{id}/execute_policy", Execute())).Status.ShouldBe(200);
    }

    [Fact]
    public async Task A_node_lacking_a_policy_this_server_holds_answers_404_naming_the_node_s_registry_not_this_one()
    {
        // The node's "no policy '…' is registered" was passed on word for word, as if this registry lacked the policy it holds.
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        using var node = new ScriptedNode(new NodeAnswer(404, $$"""{"success": false, "message": "no policy '{{uri}}' is registered", "code": "not_found"}"""));
        var id = await RegisterAsync(node);

        foreach (var (route, body) in new[] { ("execute_policy", Onboarding.Execute(uri, """{"ip": "10.0.0.1"}""")),
                     ("management", $$$"""{"policy_rule_uri": "{{{uri}}}", "action": "get_state", "data": {}}""") })
        {
            var answer = await client.Post($"/executor/{id}/{route}", body);
            answer.Status.ShouldBe(404, answer.Body?.ToJsonString());
            answer.Code.ShouldBe("not_found");
            answer.Message!.ShouldStartWith($"policy '{uri}' is registered on this server but not in the registry of executor node {node.BaseUri}/");
            answer.Message!.ShouldContain("register it on the node too");
        }

        node.Answer = new NodeAnswer(404, $$"""{"success": false, "message": "no policy '{{Policy}}' is registered", "code": "not_found"}""");
        var absent = await client.Post($"/executor/{id}/execute_policy", Execute());
        (absent.Status, absent.Code).ShouldBe((404, "not_found"));
        absent.Message!.ShouldStartWith($"policy '{Policy}' is registered neither on this server nor on executor node {node.BaseUri}/");
        (await StatusOf(id)).ShouldBe("healthy");
    }

    [Fact]
    public async Task A_policy_retired_on_this_server_is_a_410_without_reaching_the_node_and_one_deprecated_here_says_so()
    {
        using var node = new ScriptedNode(new NodeAnswer(200, """{"success": true, "data": {"allowed": true}}"""));
        var id = await RegisterAsync(node);
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        var body = Onboarding.Execute(uri, """{"ip": "10.0.0.1"}""");

        (await client.Put($"/policy/{uri}", """{"$set": {"status": "deprecated"}}""")).Status.ShouldBe(200);
        var deprecated = await client.Post($"/executor/{id}/execute_policy", body);
        deprecated.Status.ShouldBe(200);
        deprecated.Header("Deprecation").ShouldBe("true");

        (await client.Put($"/policy/{uri}", """{"$set": {"status": "retired"}}""")).Status.ShouldBe(200);
        var retired = await client.Post($"/executor/{id}/execute_policy", body);
        retired.Status.ShouldBe(410, retired.Body?.ToJsonString());
        retired.Code.ShouldBe("retired");
        retired.Message.ShouldBe($"policy '{uri}' is retired");
        var managed = await client.Post($"/executor/{id}/management", $$$"""{"policy_rule_uri": "{{{uri}}}", "action": "get_state", "data": {}}""");
        managed.Status.ShouldBe(410);
        node.Requests.ShouldBe(1); // only the deprecated call was forwarded
        (await StatusOf(id)).ShouldBe("healthy");
        await StillServes(id);
    }

    [Fact]
    public async Task A_node_that_accepts_and_never_answers_is_a_503_after_the_deadline_plus_overhead_saying_so()
    {
        using var node = new ScriptedNode(NodeAnswer.Hang);
        var id = await RegisterAsync(node);

        var answer = await client.Post($"/executor/{id}/execute_policy", Execute(""", "timeout_seconds": 0.2"""));

        answer.Status.ShouldBe(503, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("backend_unavailable");
        answer.Message.ShouldBe($"executor node {node.BaseUri}/ did not answer within 1.2 s (timeout_seconds 0.2 s plus RemoteExecutors:Overhead 1 s)");
        (await StatusOf(id)).ShouldBe("unhealthy");
        await StillServes(id);
    }

    [Fact]
    public async Task Every_forwarded_call_is_in_this_servers_decision_log_with_the_caller_context_key_and_outcome()
    {
        using var node = new ScriptedNode(new NodeAnswer(200, """{"success": true, "data": {"allowed": true}}"""));
        var id = await RegisterAsync(node);
        var policy = Unique("logged") + ":1.0-t";
        string Body(string extra = "") => $$"""{"policy_rule_uri": "{{policy}}", "input_data": {"ip": "10.0.0.1"}{{extra}}}""";

        (await client.Post($"/executor/{id}/execute_policy", Body(""", "context_key": "tenant-7" """))).Status.ShouldBe(200);
        node.Answer = new NodeAnswer(422, """{"success": false, "message": "ValueError: no", "code": "policy_error"}""");
        (await client.Post($"/executor/{id}/execute_policy", Body())).Status.ShouldBe(422);
        (await client.Post($"/executor/{id}/management", $$$"""{"policy_rule_uri": "{{{policy}}}", "action": "get_state", "data": {}}""")).Status.ShouldBe(422);

        var log = await client.Post("/decisions/query", $$"""{"policy_rule_uri": "{{policy}}"}""");
        log.Status.ShouldBe(200, log.Body?.ToJsonString());
        var decisions = log.Data!.AsArray().Select(d => d!.AsObject()).OrderBy(d => d["decision_id"]!.GetValue<string>(), StringComparer.Ordinal).ToList();
        decisions.Count.ShouldBe(3);
        decisions.ShouldAllBe(d => d["caller"]!.GetValue<string>() == "ops");
        decisions.Select(d => (d["kind"]!.GetValue<string>(), d["outcome"]!.GetValue<string>(), d["status"]!.GetValue<int>(), d["error_code"]!.GetValue<string>()))
            .ShouldBe([("execute", "result", 200, ""), ("execute", "error", 422, "policy_error"), ("management", "error", 422, "policy_error")]);
        decisions[0]["context_key"]!.GetValue<string>().ShouldBe("tenant-7");
        decisions[1]["context_key"]!.GetValue<string>().ShouldBe(policy);
        decisions[0]["input_sha256"]!.GetValue<string>().Length.ShouldBe(64);
    }
}

/// <summary>What a <see cref="ScriptedNode"/> does with a request: answer it, drop the connection, or never answer.</summary>
/// <summary>A function on an executor node whose answer takes longer than the registry's client waits.</summary>
public sealed class RemoteFunctionTimeoutTests
{
    [Fact]
    public async Task A_node_that_answers_after_the_clients_timeout_is_a_503_naming_the_bound_not_a_500()
    {
        using var node = new ScriptedNode(NodeAnswer.Hang);
        using var http = new HttpClient { Timeout = TimeSpan.FromMilliseconds(300) };
        var host = new PolicyGrid.Api.Functions.RemoteFunctionHost(http, new Uri(node.BaseUri + "/"), bundles: null);
        var e = await Should.ThrowAsync<PolicyGrid.Core.Errors.PolicyGridException>(() => host.CallAsync("slow", new JsonObject { ["ip"] = "10.0.0.1" }, TestContext.Current.CancellationToken));
        (e.Status, e.Code).ShouldBe((503, "backend_unavailable"));
        e.Message.ShouldContain("did not answer within 0.3 s");
    }

    [Fact]
    public async Task The_registry_waits_for_a_function_node_as_long_as_RemoteExecutors_FunctionCallTimeout_says()
    {
        await using var server = new GridServer { Settings = { ["PolicyGrid:Runtime:RemoteExecutors:FunctionCallTimeout"] = "00:00:00.4" } };
        var client = server.CreateClient();
        var uri = await Onboarding.SampleAsync(client, "ip_allowlist");
        using var node = new ScriptedNode(new NodeAnswer(200, """{"success": true, "data": {}}"""));
        (await client.Post("/executor", $$"""{"executor_id": "slow", "executor_host_uri": "{{node.BaseUri}}"}""")).Status.ShouldBe(200);
        (await client.Post("/function/deployments/create/slow", $$"""{"name": "far", "policy_rule_uri": "{{uri}}"}""")).Status.ShouldBe(200);
        node.Answer = NodeAnswer.Hang;
        var answer = await client.Post("/function/call_function/far", """{"ip": "10.0.0.1"}""");
        (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString());
        answer.Message!.ShouldContain("did not answer within 0.4 s");
    }
}

public sealed record NodeAnswer(int Status, string Body, string ContentType = "application/json", (string Name, string Value)[]? Headers = null,
    bool DropConnection = false, bool NeverAnswer = false, bool WithoutLength = false)
{
    public static readonly NodeAnswer Empty = new(200, "");
    public static readonly NodeAnswer Drop = new(0, "", DropConnection: true);
    public static readonly NodeAnswer Hang = new(0, "", NeverAnswer: true);
}

/// <summary>
/// A loopback HTTP/1.1 server standing in for an executor node, written on a bare socket so that it can
/// also do what a dying node does: take the whole request and close the connection without an answer.
/// Counts the requests it received in full.
/// </summary>
public sealed class ScriptedNode : IDisposable
{
    private readonly TcpListener listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource stopping = new();
    private int requests;

    public ScriptedNode(NodeAnswer answer)
    {
        Answer = answer;
        listener.Start();
        BaseUri = $"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}";
        _ = Task.Run(ServeAsync);
    }

    public string BaseUri { get; }
    public NodeAnswer Answer { get; set; }

    /// <summary>When set, the answer for a request given its request line ("GET /jobs/x?wait=60 HTTP/1.1"); else <see cref="Answer"/>.</summary>
    public Func<string, NodeAnswer>? AnswerFor { get; set; }
    public int Requests => Volatile.Read(ref requests);

    private async Task ServeAsync()
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket socket;
            try { socket = await listener.AcceptSocketAsync(stopping.Token); }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
            _ = Task.Run(() => AnswerAsync(socket));
        }
    }

    private async Task AnswerAsync(Socket socket)
    {
        using (socket)
        {
            try
            {
                if (await ReadRequestAsync(socket) is not { } requestLine) return;
                Interlocked.Increment(ref requests);
                var answer = AnswerFor is { } answerFor ? answerFor(requestLine) : Answer;
                if (answer.DropConnection) return;
                if (answer.NeverAnswer) { await Task.Delay(Timeout.Infinite, stopping.Token); return; }
                var body = Encoding.UTF8.GetBytes(answer.Body);
                var head = new StringBuilder($"HTTP/1.1 {answer.Status} {ReasonPhrase(answer.Status)}\r\nContent-Type: {answer.ContentType}\r\n{(answer.WithoutLength ? "" : $"Content-Length: {body.Length}\r\n")}Connection: close\r\n");
                foreach (var (name, value) in answer.Headers ?? []) head.Append($"{name}: {value}\r\n");
                await socket.SendAsync(Encoding.ASCII.GetBytes(head.Append("\r\n").ToString()));
                await socket.SendAsync(body);
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // The registry went away or the test ended.
            }
        }
    }

    // Headers, then a Content-Length body or a chunked one (JsonContent sends chunks); the request line, or null when the peer closed first.
    private static async Task<string?> ReadRequestAsync(Socket socket)
    {
        var received = new List<byte>();
        var buffer = new byte[16 * 1024];
        int headEnd;
        while ((headEnd = IndexOf(received, "\r\n\r\n"u8)) < 0)
        {
            var n = await socket.ReceiveAsync(buffer);
            if (n == 0) return null;
            received.AddRange(buffer.AsSpan(0, n));
        }
        var head = Encoding.ASCII.GetString([.. received[..headEnd]]).ToLowerInvariant();
        var length = head.Split("\r\n").Select(l => l.Split(':', 2)).Where(p => p.Length == 2 && p[0].Trim() == "content-length").Select(p => int.Parse(p[1].Trim())).FirstOrDefault(-1);
        bool Complete() => length >= 0 ? received.Count - headEnd - 4 >= length : !head.Contains("chunked") || IndexOf(received, "\r\n0\r\n\r\n"u8) >= 0 || IndexOf(received, "\r\n\r\n0\r\n\r\n"u8) >= 0;
        while (!Complete())
        {
            var n = await socket.ReceiveAsync(buffer);
            if (n == 0) return null;
            received.AddRange(buffer.AsSpan(0, n));
        }
        return Encoding.ASCII.GetString([.. received[..headEnd]]).Split("\r\n")[0];
    }

    private static int IndexOf(List<byte> data, ReadOnlySpan<byte> pattern) => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(data).IndexOf(pattern);

    private static string ReasonPhrase(int status) => status switch
    {
        200 => "OK", 302 => "Found", 400 => "Bad Request", 401 => "Unauthorized", 404 => "Not Found",
        405 => "Method Not Allowed", 422 => "Unprocessable Entity", 429 => "Too Many Requests", 503 => "Service Unavailable", _ => "Status",
    };

    public void Dispose()
    {
        stopping.Cancel();
        listener.Stop();
        listener.Dispose();
    }
}
