using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Transports;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// The transports as the API gets them from <c>AddPolicyRuntime</c>, against a real HTTP node on
/// loopback that answers what the test tells it to.
/// </summary>
public sealed class ExecutorTransportTests : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly ServiceProvider services;
    private readonly ScriptedNode node = new();

    public ExecutorTransportTests()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["PolicyGrid:Runtime:Pool:Workers"] = "1",
            ["PolicyGrid:Runtime:Pool:WorkDirectory"] = Path.Combine(TestBundles.Root, "transport-workers"),
            ["PolicyGrid:Runtime:Execution:DefaultTimeout"] = "00:00:03",
            ["PolicyGrid:Runtime:Execution:MaxTimeout"] = "00:00:10",
            ["PolicyGrid:Runtime:RemoteExecutors:Overhead"] = "00:00:05",
        }).Build();
        var collection = new ServiceCollection();
        collection.AddLogging();
        collection.AddEmbeddedStorage(Path.Combine(TestBundles.Root, "transport-data-" + Guid.NewGuid().ToString("N")[..8]));
        collection.AddSingleton<IPolicyBundleSource>(new RegisteredBundles());
        collection.AddPolicyRuntime(configuration);
        services = collection.BuildServiceProvider();
    }

    private IPolicyExecutor ExecutorFor(string uri)
    {
        var target = new Uri(uri);
        return services.GetServices<IExecutorTransport>().Single(t => t.CanHandle(target)).For(target);
    }

    private static ExecutionRequest Request() => new("ip_allowlist:1.0-beta", new JsonObject { ["ip"] = "10.0.0.1" },
        new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1") }, null, "tenant-a", 2);

    [Fact]
    public void Options_bind_from_configuration_and_inproc_local_is_the_local_executor()
    {
        services.GetRequiredService<PolicyRuntimeOptions>().Pool.Workers.ShouldBe(1);
        services.GetRequiredService<PolicyRuntimeOptions>().Execution.DefaultTimeout.ShouldBe(TimeSpan.FromSeconds(3));
        ExecutorFor("inproc://local").ShouldBeSameAs(services.GetRequiredService<LocalPolicyExecutor>());
        services.GetRequiredService<IPolicyExecutor>().ShouldBeSameAs(services.GetRequiredService<LocalPolicyExecutor>());
        var other = Should.Throw<PolicyGridException>(() => ExecutorFor("inproc://elsewhere"));
        other.Status.ShouldBe(502); // registration refuses it (400); one stored anyway is the executor's fault
        other.Message.ShouldBe("'inproc://elsewhere' names no in-process executor; only inproc://local exists");
    }

    [Fact]
    public async Task A_node_answer_is_returned_with_its_deprecation_and_the_body_follows_the_node_api()
    {
        node.Answer(200, """{"success": true, "data": {"allowed": true, "reason": "allowed", "input_data": {"ip": "10.0.0.1"}}}""", deprecated: true);
        var result = await ExecutorFor(node.BaseUri).ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct);
        result.Output["allowed"]!.GetValue<bool>().ShouldBeTrue();
        result.Deprecated.ShouldBeTrue();
        node.LastPath.ShouldBe("/execute_policy");
        var sent = JsonNode.Parse(node.LastBody)!;
        sent["policy_rule_uri"]!.GetValue<string>().ShouldBe("ip_allowlist:1.0-beta");
        sent["input_data"]!["ip"]!.GetValue<string>().ShouldBe("10.0.0.1");
        sent["parameters"]!["local_allowlist"]![0]!.GetValue<string>().ShouldBe("10.0.0.1");
        sent["context_key"]!.GetValue<string>().ShouldBe("tenant-a");
        sent["timeout_seconds"]!.GetValue<double>().ShouldBe(2);

        node.Answer(200, """{"success": true, "data": {"local_allowlist": []}}""");
        var managed = await ExecutorFor(node.BaseUri).ManageAsync(new ManagementRequest("ip_allowlist:1.0-beta", "get_state", []), CallerIdentity.Anonymous, Ct);
        managed.Output.ContainsKey("local_allowlist").ShouldBeTrue();
        node.LastPath.ShouldBe("/management");
        JsonNode.Parse(node.LastBody)!["action"]!.GetValue<string>().ShouldBe("get_state");
    }

    [Fact]
    public async Task The_nodes_own_4xx_answers_pass_through_with_code_and_message()
    {
        node.Answer(410, """{"success": false, "message": "policy 'ip_allowlist:1.0-beta' is retired", "code": "retired"}""");
        var retired = await Should.ThrowAsync<PolicyGridException>(() => ExecutorFor(node.BaseUri).ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct));
        retired.Status.ShouldBe(410);
        retired.Code.ShouldBe("retired");
        retired.Message.ShouldBe("policy 'ip_allowlist:1.0-beta' is retired");

        node.Answer(422, """{"success": false, "message": "ValueError: no", "code": "policy_error"}""");
        var raised = await Should.ThrowAsync<PolicyGridException>(() => ExecutorFor(node.BaseUri).ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct));
        raised.Code.ShouldBe("policy_error");

        node.Answer(504, """{"success": false, "message": "ran past its deadline", "code": "policy_timeout"}""");
        var timeout = await Should.ThrowAsync<PolicyGridException>(() => ExecutorFor(node.BaseUri).ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct));
        timeout.Status.ShouldBe(504);
        timeout.Code.ShouldBe("policy_timeout");
    }

    [Fact]
    public async Task A_failing_node_is_502_backend_error()
    {
        node.Answer(500, "<html>oops</html>");
        var error = await Should.ThrowAsync<PolicyGridException>(() => ExecutorFor(node.BaseUri).ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct));
        error.Status.ShouldBe(502);
        error.Code.ShouldBe("backend_error");
        error.Message.ShouldContain(node.BaseUri);
    }

    [Fact]
    public async Task An_unreachable_node_is_503_backend_unavailable()
    {
        // A port that was just free: nothing listens there.
        var port = LoopbackPorts.Free();
        var error = await Should.ThrowAsync<PolicyGridException>(() =>
            ExecutorFor($"http://127.0.0.1:{port}").ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct));
        error.Status.ShouldBe(503);
        error.Code.ShouldBe("backend_unavailable");
    }

    [Fact]
    public async Task A_node_that_keeps_refusing_fails_fast_and_other_nodes_are_unaffected()
    {
        var port = LoopbackPorts.Free();
        var dead = ExecutorFor($"http://127.0.0.1:{port}");
        var first = await Should.ThrowAsync<PolicyGridException>(() => dead.ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct));
        first.Message.ShouldContain("could not be reached");
        var second = await Should.ThrowAsync<PolicyGridException>(() => dead.ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct));
        second.Status.ShouldBe(503);
        second.Message.ShouldContain("failing fast");

        // The circuit belongs to that node only.
        node.Answer(200, """{"success": true, "data": {"allowed": false}}""");
        (await ExecutorFor(node.BaseUri).ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct)).Output["allowed"]!.GetValue<bool>().ShouldBeFalse();
    }

    [Fact]
    public async Task A_node_that_answered_and_then_went_away_is_said_to_be_unreachable_with_the_reason()
    {
        // One success in the circuit's window: this call's own failed attempts then open the circuit before its last
        // attempt, which meets the open circuit. The caller (and the one log line an outage gets) used to hear only
        // "is not answering (failing fast until it recovers)", never what the node did.
        node.Answer(200, """{"success": true, "data": {"allowed": true}}""");
        var executor = ExecutorFor(node.BaseUri);
        await executor.ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct);
        node.Dispose();

        var error = await Should.ThrowAsync<PolicyGridException>(() => executor.ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct));
        error.Status.ShouldBe(503);
        error.Message.ShouldStartWith($"executor node {node.BaseUri}/ could not be reached: Connection refused");
        error.Message.ShouldEndWith("(its circuit is now open: calls fail fast until it recovers)");
    }

    [Fact]
    public async Task A_node_address_answering_what_is_not_http_is_a_502_each_time_and_sent_once()
    {
        // Another service on the node's port: it reads the request and answers its own protocol.
        using var other = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        other.Start();
        var connections = 0;
        _ = Task.Run(async () =>
        {
            while (true)
            {
                using var connection = await other.AcceptTcpClientAsync();
                Interlocked.Increment(ref connections);
                var stream = connection.GetStream();
                await stream.ReadAtLeastAsync(new byte[65536], 1, throwOnEndOfStream: false);
                await stream.WriteAsync("SSH-2.0-OpenSSH_9.6\r\n\r\n"u8.ToArray());
            }
        }, Ct);
        var executor = ExecutorFor($"http://127.0.0.1:{((IPEndPoint)other.LocalEndpoint).Port}");

        for (var call = 1; call <= 4; call++)
        {
            var error = await Should.ThrowAsync<PolicyGridException>(() => executor.ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct));
            // It used to be a 503 saying the call was dropped "also when it was sent again" (it was sent once), and after
            // three such calls the circuit opened: "is not answering".
            error.Status.ShouldBe(502, error.Message);
            error.Code.ShouldBe("backend_error");
            error.Message.ShouldContain("answered with something that is not a readable HTTP answer (Received an invalid status line: 'SSH-2.0-OpenSSH_9.6'.)");
            connections.ShouldBe(call);
        }
    }

    [Fact]
    public async Task An_https_address_on_a_plain_http_port_could_not_be_reached_and_never_ran()
    {
        var error = await Should.ThrowAsync<PolicyGridException>(() =>
            ExecutorFor(node.BaseUri.Replace("http://", "https://", StringComparison.Ordinal)).ExecuteAsync(Request(), CallerIdentity.Anonymous, Ct));

        error.Status.ShouldBe(503);
        // The handshake failed before anything was sent: not "dropped the call ... it may have run there".
        error.Message.ShouldStartWith($"executor node {node.BaseUri.Replace("http://", "https://", StringComparison.Ordinal)}/ could not be reached: ");
        node.LastPath.ShouldBe("");
    }

    public async ValueTask DisposeAsync()
    {
        node.Dispose();
        await services.DisposeAsync();
    }

    /// <summary>A loopback HTTP server answering every request with the scripted status and body.</summary>
    private sealed class ScriptedNode : IDisposable
    {
        private readonly HttpListener listener;
        private (int Status, string Body, bool Deprecated) answer = (200, "{}", false);

        public ScriptedNode()
        {
            for (var attempt = 0; ; attempt++)
            {
                // A new listener for each try: one whose Start failed is disposed and cannot be started again.
                BaseUri = $"http://127.0.0.1:{LoopbackPorts.Free()}";
                var candidate = new HttpListener();
                candidate.Prefixes.Add(BaseUri + "/");
                try
                {
                    candidate.Start();
                    listener = candidate;
                    break;
                }
                catch (HttpListenerException) when (attempt < 20)
                {
                    candidate.Close();
                }
            }
            _ = Task.Run(ServeAsync);
        }

        public string BaseUri { get; private set; } = "";
        public string LastPath { get; private set; } = "";
        public string LastBody { get; private set; } = "";

        public void Answer(int status, string body, bool deprecated = false) => answer = (status, body, deprecated);

        private async Task ServeAsync()
        {
            while (listener.IsListening)
            {
                HttpListenerContext context;
                try { context = await listener.GetContextAsync(); }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
                using (var reader = new StreamReader(context.Request.InputStream, Encoding.UTF8))
                    LastBody = await reader.ReadToEndAsync();
                LastPath = context.Request.Url!.AbsolutePath;
                var (status, body, deprecated) = answer;
                context.Response.StatusCode = status;
                context.Response.ContentType = "application/json";
                if (deprecated) context.Response.AddHeader("Deprecation", "true");
                var bytes = Encoding.UTF8.GetBytes(body);
                await context.Response.OutputStream.WriteAsync(bytes);
                context.Response.Close();
            }
        }

        public void Dispose() => listener.Close();
    }
}
