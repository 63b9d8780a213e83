using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using NSubstitute;
using NSubstitute.ExceptionExtensions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Invocation;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Executor;

/// <summary>
/// The registry's dapr:// transport against the real executor app: a stand-in sidecar forwards
/// <c>/v1.0/invoke/policy-executor/method/{m}</c> to the app's <c>/{m}</c>, as daprd does, so the
/// invoked method names must match the app's routes and the app's answers must map back to the contract.
/// </summary>
public sealed class ServiceInvocationTests : IDisposable
{
    private readonly ExecutorAppFactory app = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => app.Dispose();

    private sealed class ForwardingSidecar(HttpMessageHandler appServer) : DelegatingHandler(appServer)
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            const string prefix = "/v1.0/invoke/policy-executor/method/";
            var path = request.RequestUri!.AbsolutePath;
            if (!path.StartsWith(prefix, StringComparison.Ordinal))
                return Task.FromResult(new HttpResponseMessage(HttpStatusCode.InternalServerError)
                {
                    Content = new StringContent("""{"errorCode": "ERR_DIRECT_INVOKE", "message": "couldn't find service"}"""),
                });
            request.RequestUri = new Uri("http://localhost/" + path[prefix.Length..]);
            return base.SendAsync(request, cancellationToken);
        }
    }

    private IPolicyExecutor Registry()
    {
        var sidecar = new ForwardingSidecar(app.Server.CreateHandler());
        var config = new ConfigurationBuilder().AddInMemoryCollection([new("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:3500")]).Build();
        var services = new ServiceCollection().AddSingleton<IConfiguration>(config);
        services.AddDaprAdapters(config);
        services.AddHttpClient(DaprExecutorTransport.HttpClientName).ConfigurePrimaryHttpMessageHandler(() => sidecar);
        var transport = services.BuildServiceProvider().GetServices<IExecutorTransport>().OfType<DaprExecutorTransport>().Single();
        return transport.For(new Uri(DaprNames.ExecutorHostUri));
    }

    [Fact]
    public async Task Execute_policy_reaches_the_executor_apps_route_and_returns_the_policys_result()
    {
        app.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject { ["allowed"] = true }, Deprecated: true));

        var result = await Registry().ExecuteAsync(new ExecutionRequest("ip_allowlist:1.0-beta", new JsonObject { ["ip"] = "10.0.0.1" }, ContextKey: "t1"), CallerIdentity.Anonymous, Ct);

        result.Output["allowed"]!.GetValue<bool>().ShouldBeTrue();
        result.Deprecated.ShouldBeTrue();
        await app.Policies.Received(1).ExecuteAsync(Arg.Is<ExecutionRequest>(r => r.ContextKey == "t1" && r.InputData["ip"]!.GetValue<string>() == "10.0.0.1"),
            Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>());
    }

    [Fact]
    public async Task Management_reaches_the_executor_apps_route()
    {
        app.Policies.ManageAsync(Arg.Any<ManagementRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .Returns(new PolicyResult(new JsonObject { ["ips"] = new JsonArray("10.0.0.1") }));

        var result = await Registry().ManageAsync(new ManagementRequest("ip_allowlist:1.0-beta", "get_state", new JsonObject()), CallerIdentity.Anonymous, Ct);

        result.Output["ips"]!.AsArray().Count.ShouldBe(1);
    }

    [Fact]
    public async Task A_policy_error_on_the_executor_arrives_as_the_same_422()
    {
        app.Policies.ExecuteAsync(Arg.Any<ExecutionRequest>(), Arg.Any<CallerIdentity>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(Problems.PolicyError("KeyError: 'ip'"));

        var e = await Should.ThrowAsync<PolicyGridException>(() =>
            Registry().ExecuteAsync(new ExecutionRequest("ip_allowlist:1.0-beta", new JsonObject()), CallerIdentity.Anonymous, Ct));

        e.Status.ShouldBe(422);
        e.Code.ShouldBe(ErrorCodes.PolicyError);
        e.Message.ShouldContain("KeyError");
    }

    [Fact]
    public async Task A_bad_body_is_the_executors_400_passed_through()
    {
        var e = await Should.ThrowAsync<PolicyGridException>(() =>
            Registry().ExecuteAsync(new ExecutionRequest("not a uri", new JsonObject()), CallerIdentity.Anonymous, Ct));

        e.Status.ShouldBe(400);
        e.Message.ShouldContain("policy_rule_uri");
    }
}
