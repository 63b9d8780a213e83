using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Sdk.Client;
using PolicyGrid.TestSupport;

namespace PolicyGrid.Sdk.Tests;

/// <summary>Answers every request with one canned response and remembers what it was sent.</summary>
public sealed class CannedServer : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Task _loop;

    public CannedServer()
    {
        Url = new Uri($"http://127.0.0.1:{LoopbackPorts.Free()}/");
        _listener.Prefixes.Add(Url.ToString());
        _listener.Start();
        _loop = Task.Run(async () =>
        {
            while (_listener.IsListening)
            {
                HttpListenerContext c;
                try { c = await _listener.GetContextAsync(); }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
                using var reader = new StreamReader(c.Request.InputStream);
                Seen.Add((c.Request.HttpMethod, c.Request.Url!.PathAndQuery, c.Request.Headers["Authorization"], await reader.ReadToEndAsync()));
                var (status, body, type) = Answer;
                var bytes = Encoding.UTF8.GetBytes(body);
                c.Response.StatusCode = status;
                c.Response.ContentType = type;
                c.Response.ContentLength64 = bytes.Length;
                await c.Response.OutputStream.WriteAsync(bytes);
                c.Response.Close();
            }
        });
    }

    public Uri Url { get; }
    public (int Status, string Body, string ContentType) Answer { get; set; } = (200, """{"success":true,"data":{}}""", "application/json");
    public List<(string Method, string Path, string? Authorization, string Body)> Seen { get; } = [];

    public void Dispose()
    {
        _listener.Close(); // not Stop first: see LoopbackRegistry.Dispose
        _loop.Wait(TimeSpan.FromSeconds(5));
    }
}

public sealed class ClientTests : IDisposable
{
    private readonly CannedServer _server = new();

    public void Dispose() => _server.Dispose();

    private PolicyGridClient Client(string? token = null) => new(_server.Url, token, TimeSpan.FromSeconds(5));

    [Fact]
    public async Task Success_answers_the_envelope_data()
    {
        _server.Answer = (200, """{"success":true,"data":{"policy_rule_uri":"a:1-b"}}""", "application/json");
        var doc = await Client().GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken);
        doc["policy_rule_uri"]!.GetValue<string>().ShouldBe("a:1-b");
        _server.Seen[^1].Path.ShouldBe("/policy/a:1-b");
    }

    [Fact]
    public async Task An_async_graph_run_is_cancelled_with_a_delete_of_its_execution()
    {
        _server.Answer = (200, """{"success":true,"data":{"execution_id":"e1","status":"cancelled"}}""", "application/json");
        var record = await Client().CancelGraphExecutionAsync("e1", TestContext.Current.CancellationToken);
        record["status"]!.GetValue<string>().ShouldBe("cancelled");
        (_server.Seen[^1].Method, _server.Seen[^1].Path).ShouldBe(("DELETE", "/graph/executions/e1"));
    }

    [Theory]
    [InlineData("127.0.0.1:10001")]
    [InlineData("policygrid.internal")]
    [InlineData("http://[::1")]
    public void A_POLICYGRID_SERVER_that_is_no_http_url_is_refused_naming_it_not_replaced_by_the_default(string value)
    {
        // It became http://127.0.0.1:10000 without a word, and calls went to whatever listened there.
        var server = PolicyGridClientOptions.ServerFrom(value);
        server.ShouldNotBe(PolicyGridClientOptions.DefaultServer);
        Should.Throw<ArgumentException>(() => new PolicyGridClient(new PolicyGridClientOptions { Server = server }))
            .Message.ShouldContain("POLICYGRID_SERVER) must be an absolute http(s) URL");
        PolicyGridClientOptions.ServerFrom("  http://10.0.0.7:10000 ").ShouldBe(new Uri("http://10.0.0.7:10000"));
        PolicyGridClientOptions.ServerFrom("").ShouldBe(PolicyGridClientOptions.DefaultServer);
        PolicyGridClientOptions.ServerFrom(null).ShouldBe(PolicyGridClientOptions.DefaultServer);
    }

    [Fact]
    public async Task A_success_s_warnings_are_on_the_response_and_absent_ones_are_an_empty_list()
    {
        _server.Answer = (200, """{"success":true,"data":{"graph_uri":"g:1-b"},"warnings":["no function is deployed for node 'a' yet"]}""", "application/json");
        var answer = await Client().SendAsync(HttpMethod.Post, "/graphs", new System.Text.Json.Nodes.JsonObject(), ct: TestContext.Current.CancellationToken);
        answer.Warnings.ShouldBe(["no function is deployed for node 'a' yet"]);
        answer.Data!["graph_uri"]!.GetValue<string>().ShouldBe("g:1-b");

        _server.Answer = (200, """{"success":true,"data":{}}""", "application/json");
        (await Client().SendAsync(HttpMethod.Get, "/graphs/g:1-b", ct: TestContext.Current.CancellationToken)).Warnings.ShouldBeEmpty();
    }

    [Fact]
    public async Task Typed_calls_hand_their_warnings_to_OnWarning_with_the_request_that_got_them()
    {
        var heard = new List<PolicyGridWarning>();
        using var client = new PolicyGridClient(new PolicyGridClientOptions { Server = _server.Url, OnWarning = heard.Add });
        _server.Answer = (200, """{"success":true,"data":{"graph_uri":"g:1-b"},"warnings":["no function is deployed for node 'a' yet","'nodez' is not a field of a graph"]}""", "application/json");
        var created = await client.CreateGraphAsync(new JsonObject { ["graph_uri"] = "g:1-b" }, TestContext.Current.CancellationToken);

        created["graph_uri"]!.GetValue<string>().ShouldBe("g:1-b");
        heard.ShouldBe([
            new PolicyGridWarning("POST", "/graphs", "no function is deployed for node 'a' yet"),
            new PolicyGridWarning("POST", "/graphs", "'nodez' is not a field of a graph"),
        ]);

        _server.Answer = (200, """{"success":true,"data":{}}""", "application/json");
        await client.GetGraphAsync("g:1-b", TestContext.Current.CancellationToken);
        heard.Count.ShouldBe(2); // a call without warnings calls nothing
    }

    [Fact]
    public async Task Failure_envelope_throws_status_code_message_and_field_errors()
    {
        _server.Answer = (400, """{"success":false,"code":"validation_failed","message":"name: is required","errors":[{"path":"name","message":"is required"}]}""", "application/json");
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Client().CreatePolicyAsync([], TestContext.Current.CancellationToken));
        (e.Status, e.Code, e.Reason).ShouldBe((400, "validation_failed", "name: is required"));
        e.Errors.Count.ShouldBe(1);
        e.Errors[0]!["path"]!.GetValue<string>().ShouldBe("name");
    }

    [Theory]
    [InlineData(410, "retired")]
    [InlineData(422, "policy_error")]
    [InlineData(429, "overloaded")]
    [InlineData(504, "policy_timeout")]
    public async Task Execution_failures_keep_their_contract_code(int status, string code)
    {
        _server.Answer = (status, $$"""{"success":false,"code":"{{code}}","message":"x"}""", "application/json");
        var e = await Should.ThrowAsync<PolicyGridApiException>(() =>
            Client().ExecutePolicyAsync("local", new ExecutePolicyRequest("a:1-b", new JsonObject()), TestContext.Current.CancellationToken));
        (e.Status, e.Code).ShouldBe((status, code));
    }

    [Fact]
    public async Task An_error_without_an_envelope_throws_with_its_status()
    {
        _server.Answer = (502, "<html>bad gateway</html>", "text/html");
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Client().GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken));
        (e.Status, e.Code).ShouldBe((502, "backend_error"));
        e.Reason.ShouldContain("bad gateway");
    }

    [Fact]
    public async Task A_call_giving_the_server_timeout_seconds_is_waited_for_that_long_on_top_of_the_timeout()
    {
        // ExecutePolicyAsync with TimeoutSeconds = 60 lets the policy run a minute on the server; the client gave up at
        // its own Timeout (10 s by default) and threw PolicyGridUnreachableException while the server still ran it.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var bodies = new List<string>();
        var serving = Task.Run(async () =>
        {
            for (var i = 0; i < 3; i++)
            {
                using var socket = await listener.AcceptSocketAsync();
                var request = "";
                var buffer = new byte[8192];
                while (!request.Contains("\r\n\r\n", StringComparison.Ordinal) || !request.TrimEnd().EndsWith('}'))
                    request += Encoding.UTF8.GetString(buffer, 0, await socket.ReceiveAsync(buffer));
                bodies.Add(request[(request.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]);
                await Task.Delay(TimeSpan.FromSeconds(1)); // the policy takes a second: longer than the client's Timeout
                var body = """{"success":true,"data":{"allowed":true}}""";
                await socket.SendAsync(Encoding.UTF8.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}"));
            }
        });
        using var client = new PolicyGridClient(new Uri($"http://127.0.0.1:{port}"), null, TimeSpan.FromMilliseconds(300));
        var ct = TestContext.Current.CancellationToken;

        (await client.ExecutePolicyAsync("local", new ExecutePolicyRequest("p:1-t", new JsonObject()) { TimeoutSeconds = 5 }, ct))!["allowed"]!.GetValue<bool>().ShouldBeTrue();
        (await client.ManagementAsync("local", new ManagementRequest("p:1-t", "get_state", null) { TimeoutSeconds = 5 }, ct))!["allowed"]!.GetValue<bool>().ShouldBeTrue();
        (await client.ExecuteGraphAsync("g:1-t", new JsonObject(), timeoutSeconds: 5, ct: ct))!["allowed"]!.GetValue<bool>().ShouldBeTrue();

        await serving;
        bodies.ShouldAllBe(b => JsonNode.Parse(b, null, default)!["timeout_seconds"]!.GetValue<double>() == 5);
    }

    [Fact]
    public async Task A_body_json_cannot_carry_is_the_callers_400_before_anything_is_sent()
    {
        // Nothing listens there: the check comes before any connection.
        using var client = new PolicyGridClient(new Uri("http://127.0.0.1:9"), null, TimeSpan.FromSeconds(5));
        var ct = TestContext.Current.CancellationToken;
        JsonNode deep = new JsonArray();
        for (var i = 0; i < 1100; i++) deep = new JsonArray(deep);

        var nan = await Should.ThrowAsync<PolicyGridApiException>(() =>
            client.ExecutePolicyAsync("local", new ExecutePolicyRequest("p:1-t", new JsonObject { ["n"] = double.NaN }), ct));
        var tooDeep = await Should.ThrowAsync<PolicyGridApiException>(() => client.SendAsync(HttpMethod.Post, "/policy/query", new JsonObject { ["x"] = deep }, ct: ct));

        (nan.Status, nan.Code).ShouldBe((400, "validation_failed"));
        (tooDeep.Status, tooDeep.Code).ShouldBe((400, "validation_failed"));
    }

    [Fact]
    public async Task A_body_holding_a_lone_surrogate_is_the_callers_400_naming_it_before_anything_is_sent()
    {
        // The writer sent it as U+FFFD: a policy document, a filter or an input was stored or matched with other text than
        // the caller gave, and nothing said so. Nothing listens at port 9: the check comes before any connection.
        using var client = new PolicyGridClient(new Uri("http://127.0.0.1:9"), null, TimeSpan.FromSeconds(5));
        var ct = TestContext.Current.CancellationToken;

        var value = await Should.ThrowAsync<PolicyGridApiException>(() =>
            client.ExecutePolicyAsync("local", new ExecutePolicyRequest("p:1-t", new JsonObject { ["who"] = new JsonArray("x\ud800") }), ct));
        var key = await Should.ThrowAsync<PolicyGridApiException>(() =>
            client.QueryPoliciesAsync(new JsonObject { ["name\udc00"] = "x" }, ct: ct));

        (value.Status, value.Code, value.Reason).ShouldBe((400, "validation_failed", "body.input_data.who[0]: '\\ud800' is a lone surrogate, which no JSON text can hold"));
        (key.Status, key.Code, key.Reason).ShouldBe((400, "validation_failed", "body: key '\\udc00' is a lone surrogate, which no JSON text can hold"));
    }

    [Fact]
    public async Task A_body_past_the_servers_limit_raises_its_413_not_unreachable()
    {
        // The server answers 413 from the Content-Length and closes without reading the body, as PolicyGrid does. Sending
        // the rest of the body then failed and the call threw PolicyGridUnreachableException (503) instead of the 413.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var serving = Task.Run(async () =>
        {
            using var socket = await listener.AcceptSocketAsync();
            var request = "";
            var buffer = new byte[8192];
            while (!request.Contains("\r\n\r\n", StringComparison.Ordinal))
                request += Encoding.Latin1.GetString(buffer, 0, await socket.ReceiveAsync(buffer));
            var body = """{"success":false,"code":"too_large","message":"request body is larger than the limit of 1048576 bytes"}""";
            await socket.SendAsync(Encoding.UTF8.GetBytes($"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}"));
            socket.Close(); // with the body unread
        });
        using var client = new PolicyGridClient(new Uri($"http://127.0.0.1:{port}"), null, TimeSpan.FromSeconds(5));

        var e = await Should.ThrowAsync<PolicyGridApiException>(() => client.ExecutePolicyAsync("local",
            new ExecutePolicyRequest("p:1-t", new JsonObject { ["blob"] = new string('a', 32 << 20) }), TestContext.Current.CancellationToken));

        e.ShouldNotBeOfType<PolicyGridUnreachableException>();
        (e.Status, e.Code).ShouldBe((413, "too_large"));
        await serving;
    }

    [Fact]
    public async Task A_server_that_is_not_there_fails_fast_even_for_a_call_with_a_long_timeout_seconds()
    {
        var port = LoopbackPorts.Free();
        using var client = new PolicyGridClient(new Uri($"http://127.0.0.1:{port}"), null, TimeSpan.FromMilliseconds(500));
        var clock = System.Diagnostics.Stopwatch.StartNew();

        await Should.ThrowAsync<PolicyGridUnreachableException>(() =>
            client.ExecutePolicyAsync("local", new ExecutePolicyRequest("p:1-t", new JsonObject()) { TimeoutSeconds = 600 }, TestContext.Current.CancellationToken));

        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task A_job_long_poll_is_waited_for_on_top_of_the_timeout()
    {
        // GetJobAsync(wait) asks the server to hold its answer until the job ends; the client gave up at its own
        // Timeout and threw PolicyGridUnreachableException while the job ran on.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var serving = Task.Run(async () =>
        {
            using var socket = await listener.AcceptSocketAsync();
            var buffer = new byte[8192];
            await socket.ReceiveAsync(buffer);
            await Task.Delay(TimeSpan.FromSeconds(1)); // the job ends after a second: longer than the client's Timeout
            var body = """{"success":true,"data":{"job_id":"j1","status":"succeeded"}}""";
            await socket.SendAsync(Encoding.UTF8.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}"));
        });
        using var client = new PolicyGridClient(new Uri($"http://127.0.0.1:{port}"), null, TimeSpan.FromMilliseconds(300));

        var job = await client.GetJobAsync("j1", TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);

        job["status"]!.GetValue<string>().ShouldBe("succeeded");
        await serving;
    }

    [Fact]
    public async Task A_gateway_s_412_precondition_failure_is_a_conflict_like_the_server_s_409()
    {
        // A proxy that checks If-Match itself answers 412 without an envelope; it was reported as a backend_error.
        _server.Answer = (412, "precondition failed", "text/plain");
        var e = await Should.ThrowAsync<PolicyGridApiException>(() =>
            Client().UpdateExecutorAsync("edge-1", new JsonObject { ["$set"] = new JsonObject() }, "\"7\"", TestContext.Current.CancellationToken));
        (e.Status, e.Code).ShouldBe((412, "conflict"));
    }

    [Theory]
    [InlineData("<html>\n  <body>\r\n    bad gateway\n  </body>\n</html>\n", "without an envelope: <html> <body> bad gateway </body> </html>")]
    [InlineData("", "without an envelope: (an empty body)")]
    public async Task An_error_page_without_the_envelope_is_told_on_one_line(string body, string ending)
    {
        // A proxy's page came through as it was, many lines of HTML in one exception message (and one log entry).
        _server.Answer = (502, body, "text/html");
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Client().GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken));
        (e.Status, e.Code).ShouldBe((502, "backend_error"));
        e.Reason.ShouldEndWith(ending);
    }

    [Theory]
    [InlineData("<html>sign in</html>", "text/html")]
    [InlineData("{\"allowed\": true}", "application/json")]
    public async Task A_200_without_the_envelope_is_never_taken_for_a_result(string body, string type)
    {
        _server.Answer = (200, body, type);
        var ct = TestContext.Current.CancellationToken;

        var execute = await Should.ThrowAsync<PolicyGridApiException>(() => Client().ExecutePolicyAsync("local", new ExecutePolicyRequest("a:1-b", new JsonObject()), ct));
        var manage = await Should.ThrowAsync<PolicyGridApiException>(() => Client().ManagementAsync("local", new ManagementRequest("a:1-b", "get_state", null), ct));

        foreach (var e in new[] { execute, manage })
        {
            (e.Status, e.Code).ShouldBe((502, "backend_error"));
            e.Reason.ShouldContain("without a PolicyGrid envelope");
        }
    }

    [Fact]
    public async Task A_redirect_to_another_origin_carries_no_token()
    {
        using var elsewhere = new CannedServer();
        using var redirector = new TcpListener(IPAddress.Loopback, 0);
        redirector.Start();
        var answering = Task.Run(async () =>
        {
            using var socket = await redirector.AcceptSocketAsync(TestContext.Current.CancellationToken);
            var buffer = new byte[8192];
            await socket.ReceiveAsync(buffer, TestContext.Current.CancellationToken);
            await socket.SendAsync(Encoding.ASCII.GetBytes(
                $"HTTP/1.1 302 Found\r\nLocation: {elsewhere.Url}policy/a:1-b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), TestContext.Current.CancellationToken);
        }, TestContext.Current.CancellationToken);
        var port = ((IPEndPoint)redirector.LocalEndpoint).Port;
        using var client = new PolicyGridClient(new Uri($"http://127.0.0.1:{port}/"), "s3cret", TimeSpan.FromSeconds(5));
        await client.GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken);
        await answering;
        elsewhere.Seen[^1].Authorization.ShouldBeNull();
    }

    [Fact]
    public async Task Bearer_token_and_body_are_sent()
    {
        _server.Answer = (200, """{"success":true,"data":{"allowed":true}}""", "application/json");
        var request = new ExecutePolicyRequest("a:1-b", new JsonObject { ["ip"] = "10.0.0.1" }) { Parameters = new JsonObject { ["k"] = 1 } };
        var result = await Client("s3cret").ExecutePolicyAsync("local", request, TestContext.Current.CancellationToken);
        result!["allowed"]!.GetValue<bool>().ShouldBeTrue();
        var seen = _server.Seen[^1];
        (seen.Method, seen.Path, seen.Authorization).ShouldBe(("POST", "/executor/local/execute_policy", "Bearer s3cret"));
        JsonNode.Parse(seen.Body)!.ToJsonString().ShouldBe("""{"policy_rule_uri":"a:1-b","input_data":{"ip":"10.0.0.1"},"parameters":{"k":1}}""");
    }

    [Fact]
    public async Task Query_paging_goes_into_the_query_string()
    {
        _server.Answer = (200, """{"success":true,"data":[]}""", "application/json");
        await Client().QueryPoliciesAsync(new JsonObject { ["name"] = "x" }, new QueryOptions(Limit: 5, Sort: "name:asc"), TestContext.Current.CancellationToken);
        _server.Seen[^1].Path.ShouldBe("/policy/query?limit=5&sort=name%3Aasc");
        _server.Seen[^1].Body.ShouldBe("""{"name":"x"}""");
    }

    [Fact]
    public async Task A_refused_connection_fails_closed()
    {
        var url = new Uri($"http://127.0.0.1:{LoopbackPorts.Free()}/");
        var e = await Should.ThrowAsync<PolicyGridUnreachableException>(() =>
            new PolicyGridClient(url, null, TimeSpan.FromSeconds(2)).GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken));
        (e.Status, e.Code).ShouldBe((503, "backend_unavailable"));
        e.Reason.ShouldContain(url.ToString());
        // What to do about it, as the CLI and the Python SDK say: start the server, or point the client elsewhere.
        e.Message.ShouldContain("policygrid serve");
        e.Message.ShouldContain("PolicyGridClientOptions.Server");
        e.Message.ShouldContain("POLICYGRID_SERVER");
    }

    private const string Unauthorized = """{"success":false,"code":"unauthorized","message":"this server requires an API token: send 'Authorization: Bearer <token>'"}""";

    [Fact]
    public async Task A_401_without_a_token_says_how_to_give_this_client_one()
    {
        // It said only the server's HTTP wording, which an SDK caller does not write.
        _server.Answer = (401, Unauthorized, "application/json");
        using var client = new PolicyGridClient(new PolicyGridClientOptions { Server = _server.Url, Token = null });
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => client.GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken));
        (e.Status, e.Code).ShouldBe((401, "unauthorized"));
        e.Reason.ShouldBe("this server requires an API token: send 'Authorization: Bearer <token>'");
        e.Message.ShouldContain("requires an API token");
        e.Message.ShouldContain("PolicyGridClientOptions.Token");
        e.Message.ShouldContain("POLICYGRID_TOKEN");
    }

    [Fact]
    public async Task A_401_with_a_token_says_that_token_is_not_accepted()
    {
        _server.Answer = (401, Unauthorized, "application/json");
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Client("not-the-servers-token").GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken));
        e.Message.ShouldContain("is not one the server accepts");
    }

    [Fact]
    public async Task A_401_from_another_origin_gets_no_token_hint()
    {
        // The token is never sent to a bundle URL elsewhere, so giving one is no fix there.
        using var elsewhere = new CannedServer { Answer = (401, Unauthorized, "application/json") };
        _server.Answer = (401, Unauthorized, "application/json");
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Client().SendAsync(HttpMethod.Get, elsewhere.Url + "bundle.zip", ct: TestContext.Current.CancellationToken));
        e.Status.ShouldBe(401);
        e.Hint.ShouldBeNull();
    }

    [Theory]
    [InlineData("hello there\r\n")] // not HTTP at all
    [InlineData("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"success\": true")] // cut short
    public async Task A_broken_answer_fails_closed_as_unreachable(string answer)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var answering = Task.Run(async () =>
        {
            using var socket = await listener.AcceptSocketAsync(TestContext.Current.CancellationToken);
            await socket.ReceiveAsync(new byte[8192], TestContext.Current.CancellationToken);
            await socket.SendAsync(Encoding.ASCII.GetBytes(answer), TestContext.Current.CancellationToken);
            socket.Shutdown(SocketShutdown.Both);
        }, TestContext.Current.CancellationToken);
        using var client = new PolicyGridClient(new Uri($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/"), null, TimeSpan.FromSeconds(5));
        var e = await Should.ThrowAsync<PolicyGridUnreachableException>(() => client.GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken));
        e.Code.ShouldBe("backend_unavailable");
        await answering;
    }

    [Fact]
    public async Task A_bundle_download_that_trickles_is_cut_off_at_the_timeout_for_the_whole_call()
    {
        // Every byte arrives well within any per-read limit, but the whole archive would take 4 s: a bundle URL doing this
        // must not hold the evaluator loading the policy past Timeout (the Python SDK's download used to be bounded per read).
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var trickling = Task.Run(async () =>
        {
            using var socket = await listener.AcceptSocketAsync(stop.Token);
            await socket.ReceiveAsync(new byte[8192], stop.Token);
            var body = Encoding.ASCII.GetBytes("PK" + new string('z', 38));
            await socket.SendAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {body.Length}\r\n\r\n"), stop.Token);
            try
            {
                foreach (var b in body)
                {
                    await socket.SendAsync(new[] { b }, stop.Token);
                    await Task.Delay(100, stop.Token);
                }
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException) { } // the client gave up
        }, TestContext.Current.CancellationToken);
        using var client = new PolicyGridClient(new Uri($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/"), null, TimeSpan.FromMilliseconds(500));
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var e = await Should.ThrowAsync<PolicyGridUnreachableException>(() => client.DownloadBundleAsync("/bundle.zip", TestContext.Current.CancellationToken));

        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(3));
        e.Reason.ShouldContain("no answer within 0.5 s");
        await stop.CancelAsync();
        await trickling;
    }

    [Fact]
    public async Task A_server_that_never_answers_times_out_and_fails_closed()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start(); // accepts, never answers
        var url = new Uri($"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}/");
        var e = await Should.ThrowAsync<PolicyGridUnreachableException>(() =>
            new PolicyGridClient(url, null, TimeSpan.FromMilliseconds(300)).GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken));
        e.Reason.ShouldContain("no answer within 0.3 s");
    }

    [Fact]
    public async Task Bundle_upload_sends_raw_bytes_and_reads_the_answer()
    {
        _server.Answer = (200, """{"success":true,"data":{"code":"bundle://sha256/ab","sha256":"ab","size":3,"url":"http://h/bundles/sha256/ab"}}""", "application/json");
        var upload = await Client().UploadBundleAsync([1, 2, 3], "application/zip", TestContext.Current.CancellationToken);
        upload.ShouldBe(new BundleUpload("bundle://sha256/ab", "ab", 3, "http://h/bundles/sha256/ab"));
        _server.Seen[^1].Path.ShouldBe("/bundles");
    }
}

/// <summary>Changes POLICYGRID_TOKEN, so it runs alone: other tests' clients read it.</summary>
[CollectionDefinition(nameof(EnvironmentCollection), DisableParallelization = true)]
public sealed class EnvironmentCollection;

[Collection(nameof(EnvironmentCollection))]
public sealed class ClientEnvironmentTests : IDisposable
{
    private readonly CannedServer _server = new();

    public void Dispose() => _server.Dispose();

    [Fact]
    public async Task The_server_and_token_constructor_reads_POLICYGRID_TOKEN_when_no_token_is_given()
    {
        // As PolicyGridClientOptions.Token and the Python SDK's token=None do: it used to send none, so a program that
        // worked with the options (or in Python) got a 401 with POLICYGRID_TOKEN set.
        var before = Environment.GetEnvironmentVariable("POLICYGRID_TOKEN");
        Environment.SetEnvironmentVariable("POLICYGRID_TOKEN", "from-env");
        try
        {
            using (var client = new PolicyGridClient(_server.Url, timeout: TimeSpan.FromSeconds(5)))
                await client.GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken);
            _server.Seen[^1].Authorization.ShouldBe("Bearer from-env");
            using (var client = new PolicyGridClient(_server.Url, "", TimeSpan.FromSeconds(5)))
                await client.GetPolicyAsync("a:1-b", TestContext.Current.CancellationToken);
            _server.Seen[^1].Authorization.ShouldBeNull(); // "" sends none
        }
        finally
        {
            Environment.SetEnvironmentVariable("POLICYGRID_TOKEN", before);
        }
    }
}
