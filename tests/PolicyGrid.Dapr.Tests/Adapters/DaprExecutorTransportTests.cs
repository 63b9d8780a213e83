using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Invocation;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

public sealed class DaprExecutorTransportTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Plays the sidecar's HTTP API: records each request, answers what the test queued.</summary>
    private sealed class SidecarHandler(Func<HttpRequestMessage, HttpResponseMessage> answer) : HttpMessageHandler
    {
        public List<(HttpRequestMessage Request, string Body)> Seen { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Seen.Add((request, request.Content is null ? "" : await request.Content.ReadAsStringAsync(cancellationToken)));
            return answer(request);
        }
    }

    private static (IPolicyExecutor Executor, SidecarHandler Sidecar) Executor(Func<HttpRequestMessage, HttpResponseMessage> answer, string uri = "dapr://policy-executor")
    {
        var handler = new SidecarHandler(answer);
        var services = new ServiceCollection();
        var config = new ConfigurationBuilder().AddInMemoryCollection([new("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:3999"), new("DAPR_API_TOKEN", "sidecar-secret")]).Build();
        services.AddSingleton<IConfiguration>(config);
        services.AddDaprAdapters(config);
        services.AddHttpClient(DaprExecutorTransport.HttpClientName).ConfigurePrimaryHttpMessageHandler(() => handler);
        var transport = services.BuildServiceProvider().GetServices<IExecutorTransport>().OfType<DaprExecutorTransport>().Single();
        transport.CanHandle(new Uri(uri)).ShouldBeTrue();
        return (transport.For(new Uri(uri)), handler);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Executor_dapr_is_built_in_only_where_the_app_registers_it(bool registers)
    {
        // An app that does not register 'dapr' (RegisterDaprExecutor off) leaves the name to its operators: one may
        // register an executor of that name and change or delete it like any other.
        var config = new ConfigurationBuilder().AddInMemoryCollection([new("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:3999"),
            new("PolicyGrid:Dapr:RegisterDaprExecutor", registers ? "true" : "false")]).Build();
        var services = new ServiceCollection();
        services.AddDaprAdapters(config);

        var builtIn = services.Where(d => d.ServiceType == typeof(BuiltInExecutorId)).Select(d => ((BuiltInExecutorId)d.ImplementationInstance!).Id);

        builtIn.ShouldBe(registers ? [PolicyGrid.Dapr.DaprNames.ExecutorId] : []);
    }

    private static HttpResponseMessage Json(HttpStatusCode status, string json) =>
        new(status) { Content = new StringContent(json, Encoding.UTF8, "application/json") };

    private static readonly ExecutionRequest Request = new("ip_allowlist:1.0-beta", new JsonObject { ["ip"] = "10.0.0.1" },
        Parameters: new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1") }, ContextKey: "tenant-a", TimeoutSeconds: 5);

    [Fact]
    public async Task Each_call_carries_a_call_id_of_its_own_so_a_retry_daprd_delivers_twice_runs_once_on_the_node()
    {
        var (executor, sidecar) = Executor(_ => Json(HttpStatusCode.OK, """{"success": true, "data": {"allowed": true}}"""));

        await executor.ExecuteAsync(Request, new CallerIdentity("ci"), Ct);
        await executor.ExecuteAsync(Request, new CallerIdentity("ci"), Ct);
        await executor.ManageAsync(new ManagementRequest("ip_allowlist:1.0-beta", "get_state", []), new CallerIdentity("ci"), Ct);

        var ids = sidecar.Seen.Select(s => s.Request.Headers.GetValues(DaprInvokedExecutor.CallIdHeader).Single()).ToList();
        ids.Count.ShouldBe(3);
        ids.Distinct().Count().ShouldBe(3);
        ids.ShouldAllBe(id => id.Length == 32);
    }

    [Fact]
    public async Task Each_call_says_how_long_it_is_waited_for_so_the_node_does_not_start_it_after_that()
    {
        var (executor, sidecar) = Executor(_ => Json(HttpStatusCode.OK, """{"success": true, "data": {"allowed": true}}"""));

        await executor.ExecuteAsync(Request, new CallerIdentity("ci"), Ct);
        await executor.ManageAsync(new ManagementRequest("ip_allowlist:1.0-beta", "get_state", []), new CallerIdentity("ci"), Ct);

        var budgets = sidecar.Seen.Select(s => s.Request.Headers.GetValues(PolicyGrid.Runtime.Transports.NodeHeaders.TimeoutMs).Single()).ToList();
        budgets.ShouldBe([((long)((DaprInvokedExecutor)executor).CallTimeout.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ((long)((DaprInvokedExecutor)executor).CallTimeout.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture)]);
    }

    [Fact]
    public async Task Execute_invokes_method_execute_policy_through_the_sidecar()
    {
        var (executor, sidecar) = Executor(_ => Json(HttpStatusCode.OK, """{"success": true, "data": {"allowed": true}}"""));

        var result = await executor.ExecuteAsync(Request, new CallerIdentity("ci"), Ct);

        result.Output["allowed"]!.GetValue<bool>().ShouldBeTrue();
        var (request, body) = sidecar.Seen.Single();
        request.Method.ShouldBe(HttpMethod.Post);
        request.RequestUri!.ToString().ShouldBe("http://127.0.0.1:3999/v1.0/invoke/policy-executor/method/execute_policy");
        request.Headers.GetValues("dapr-api-token").Single().ShouldBe("sidecar-secret");
        request.Headers.GetValues(DaprInvokedExecutor.CallerHeader).Single().ShouldBe("ci");
        JsonNode.DeepEquals(JsonNode.Parse(body), JsonNode.Parse("""
            {"policy_rule_uri": "ip_allowlist:1.0-beta", "input_data": {"ip": "10.0.0.1"},
             "parameters": {"local_allowlist": ["10.0.0.1"]}, "context_key": "tenant-a", "timeout_seconds": 5}
            """)).ShouldBeTrue(body);
    }

    [Fact]
    public async Task Management_invokes_method_management()
    {
        var (executor, sidecar) = Executor(_ => Json(HttpStatusCode.OK, """{"success": true, "data": {"ips": []}}"""));

        await executor.ManageAsync(new ManagementRequest("ip_allowlist:1.0-beta", "get_state", new JsonObject()), CallerIdentity.Anonymous, Ct);

        sidecar.Seen.Single().Request.RequestUri!.AbsolutePath.ShouldBe("/v1.0/invoke/policy-executor/method/management");
        JsonNode.Parse(sidecar.Seen.Single().Body)!["action"]!.GetValue<string>().ShouldBe("get_state");
    }

    [Fact]
    public async Task A_deprecation_header_marks_the_result()
    {
        var (executor, _) = Executor(_ =>
        {
            var r = Json(HttpStatusCode.OK, """{"success": true, "data": {}}""");
            r.Headers.Add("Deprecation", "true");
            return r;
        });
        (await executor.ExecuteAsync(Request, CallerIdentity.Anonymous, Ct)).Deprecated.ShouldBeTrue();
    }

    [Theory]
    [InlineData(HttpStatusCode.UnprocessableEntity, "policy_error")]
    [InlineData(HttpStatusCode.Gone, "retired")]
    [InlineData(HttpStatusCode.NotFound, "not_found")]
    [InlineData(HttpStatusCode.BadRequest, "validation_failed")]
    [InlineData(HttpStatusCode.GatewayTimeout, "policy_timeout")]
    public async Task The_nodes_own_errors_pass_through(HttpStatusCode status, string code)
    {
        var (executor, _) = Executor(_ => Json(status, $$"""{"success": false, "message": "from the node", "code": "{{code}}"}"""));

        var e = await Should.ThrowAsync<PolicyGridException>(() => executor.ExecuteAsync(Request, CallerIdentity.Anonymous, Ct));

        e.Status.ShouldBe((int)status);
        e.Code.ShouldBe(code);
        e.Message.ShouldBe("from the node");
    }

    [Fact]
    public async Task An_overloaded_node_passes_its_retry_after_through()
    {
        var (executor, _) = Executor(_ =>
        {
            var r = Json(HttpStatusCode.TooManyRequests, """{"success": false, "message": "queue full", "code": "overloaded"}""");
            r.Headers.RetryAfter = new System.Net.Http.Headers.RetryConditionHeaderValue(TimeSpan.FromSeconds(3));
            return r;
        });
        var e = await Should.ThrowAsync<PolicyGridException>(() => executor.ExecuteAsync(Request, CallerIdentity.Anonymous, Ct));
        e.Status.ShouldBe(429);
        e.RetryAfterSeconds.ShouldBe(3);
    }

    [Fact]
    public async Task An_apps_own_503_passes_its_message_and_retry_after_through_and_does_not_count_as_the_app_being_down()
    {
        // Its Retry-After was dropped: a caller heard "unavailable" with no word on when to come back.
        var (executor, _) = Executor(_ =>
        {
            var r = Json(HttpStatusCode.ServiceUnavailable, """{"success": false, "message": "policy workers are not available: out of memory", "code": "backend_unavailable"}""");
            r.Headers.RetryAfter = new System.Net.Http.Headers.RetryConditionHeaderValue(TimeSpan.FromSeconds(4));
            return r;
        });

        var e = await Should.ThrowAsync<PolicyGridException>(() => executor.ExecuteAsync(Request, CallerIdentity.Anonymous, Ct));

        (e.Status, e.Code).ShouldBe((503, ErrorCodes.BackendUnavailable));
        e.Message.ShouldBe("Dapr app 'policy-executor' (execute_policy) is unavailable: policy workers are not available: out of memory");
        e.RetryAfterSeconds.ShouldBe(4);
        e.ShouldBeOfType<PolicyGrid.Runtime.Transports.NodeUnavailable>();
    }

    [Fact]
    public async Task An_app_the_sidecar_cannot_reach_is_a_503()
    {
        var (executor, _) = Executor(_ => Json(HttpStatusCode.InternalServerError,
            """{"errorCode": "ERR_DIRECT_INVOKE", "message": "failed to invoke, id: policy-executor, err: couldn't find service: policy-executor"}"""));

        var e = await Should.ThrowAsync<PolicyGridException>(() => executor.ExecuteAsync(Request, CallerIdentity.Anonymous, Ct));

        e.Status.ShouldBe(503);
        e.Code.ShouldBe(ErrorCodes.BackendUnavailable);
        e.Message.ShouldContain("couldn't find service");
    }

    [Fact]
    public async Task An_unreachable_sidecar_is_a_503()
    {
        var (executor, _) = Executor(_ => throw new HttpRequestException("Connection refused (127.0.0.1:3999)"));

        var e = await Should.ThrowAsync<PolicyGridException>(() => executor.ExecuteAsync(Request, CallerIdentity.Anonymous, Ct));

        e.Status.ShouldBe(503);
        e.Message.ShouldContain("policy-executor");
    }

    [Theory]
    [InlineData(HttpStatusCode.InternalServerError, """{"success": false, "message": "boom", "code": "internal_error"}""")]
    [InlineData(HttpStatusCode.BadGateway, "<html>bad gateway</html>")]
    [InlineData(HttpStatusCode.OK, "not json")]
    [InlineData(HttpStatusCode.OK, """{"success": true, "data": {"allowed": true}, "data": {"allowed": false}}""")]
    [InlineData(HttpStatusCode.OK, """{"success": true, "data": {"allowed": true, "allowed": false}}""")]
    [InlineData(HttpStatusCode.OK, """{"success": true, "data": {"s": "\ud800"}}""")]
    public async Task Other_failures_are_a_502_naming_the_app(HttpStatusCode status, string body)
    {
        var (executor, _) = Executor(_ => Json(status, body));

        var e = await Should.ThrowAsync<PolicyGridException>(() => executor.ExecuteAsync(Request, CallerIdentity.Anonymous, Ct));

        e.Status.ShouldBe(502);
        e.Code.ShouldBe(ErrorCodes.BackendError);
        e.Message.ShouldContain("policy-executor");
    }

    [Fact]
    public void A_call_may_wait_as_long_as_the_longest_policy_deadline_plus_the_networks_share()
    {
        // The sidecar's HttpClient used to give up after 5 minutes whatever the policy's deadline: a policy allowed to
        // run 10 minutes (Execution:MaxTimeout) was a 503 "did not answer in time" rather than its answer or 504.
        var services = new ServiceCollection();
        var config = new ConfigurationBuilder().AddInMemoryCollection([new("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:3999")]).Build();
        services.AddSingleton<IConfiguration>(config);
        services.AddDaprAdapters(config);
        services.Configure<PolicyGrid.Runtime.PolicyRuntimeOptions>(o => o.Execution.MaxTimeout = TimeSpan.FromMinutes(10));
        var provider = services.BuildServiceProvider();

        provider.GetRequiredService<IHttpClientFactory>().CreateClient(DaprExecutorTransport.HttpClientName).Timeout
            .ShouldBe(Timeout.InfiniteTimeSpan, "each caller bounds its own call (graph runs wait up to an hour)");
        var transport = provider.GetServices<IExecutorTransport>().OfType<DaprExecutorTransport>().Single();
        var executor = (DaprInvokedExecutor)transport.For(new Uri("dapr://policy-executor"));
        executor.CallTimeout.ShouldBe(TimeSpan.FromMinutes(10) + TimeSpan.FromSeconds(15) + DaprExecutorTransport.RetryRoom);
    }

    [Fact]
    public async Task A_call_past_its_bound_is_a_503_naming_the_app()
    {
        var executor = new DaprInvokedExecutor(new HttpClient(new HangingSidecar()) { BaseAddress = new Uri("http://127.0.0.1:3999/") },
            "policy-executor", TimeSpan.FromMilliseconds(50));

        var e = await Should.ThrowAsync<PolicyGridException>(() => executor.ExecuteAsync(Request, CallerIdentity.Anonymous, Ct));

        e.Status.ShouldBe(503);
        e.Message.ShouldBe("Dapr app 'policy-executor' did not answer execute_policy in time");
    }

    /// <summary>A sidecar that never answers: the call ends only when its own bound cancels it.</summary>
    private sealed class HangingSidecar : HttpMessageHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            throw new InvalidOperationException("unreachable");
        }
    }

    [Fact]
    public void Only_dapr_uris_are_handled()
    {
        var transport = new DaprExecutorTransport(new ServiceCollection().AddHttpClient().BuildServiceProvider().GetRequiredService<IHttpClientFactory>());
        transport.CanHandle(new Uri("dapr://policy-executor")).ShouldBeTrue();
        transport.CanHandle(new Uri("http://executor:8080")).ShouldBeFalse();
        transport.CanHandle(new Uri("inproc://local")).ShouldBeFalse();
    }
}
