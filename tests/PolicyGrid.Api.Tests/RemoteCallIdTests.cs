using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Transports;
using PolicyGrid.TestSupport;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// A registry and a real second PolicyGrid server as its <c>http://</c> executor node, with a proxy between them that
/// loses connections: every call names itself (<c>X-PolicyGrid-Call-Id</c>), so a call whose connection went after the
/// node had it is sent again and still runs once; and it says how long the registry waits
/// (<c>X-PolicyGrid-Timeout-Ms</c>), so a call queued on the node past that does not start there.
/// </summary>
public sealed class RemoteCallIdTests
{
    private const string NodeToken = "call-id-node-token-0123456789abcdef";
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string CountingPolicy = NodeCallIdTests.CountingPolicy;

    private static GridServer Registry(string functionCallTimeout = "00:01:40", string overhead = "00:00:15") => new()
    {
        Settings =
        {
            ["PolicyGrid:Runtime:RemoteExecutors:Token"] = NodeToken,
            ["PolicyGrid:Runtime:RemoteExecutors:FunctionCallTimeout"] = functionCallTimeout,
            ["PolicyGrid:Runtime:RemoteExecutors:Overhead"] = overhead,
        },
    };

    private static string Execute(string policy) => new JsonObject { ["policy_rule_uri"] = policy, ["input_data"] = new JsonObject() }.ToJsonString();

    private static HttpClient ClientOf(TokenNode node) =>
        new() { BaseAddress = new Uri(node.Url), DefaultRequestHeaders = { Authorization = new("Bearer", NodeToken) } };

    /// <summary>Registers the counting policy in the node's own registry (a node runs Type 2 calls from there).</summary>
    private static async Task<string> RegisterOnNodeAsync(TokenNode node, HttpClient nodeClient)
    {
        var name = Unique("counted");
        var code = (await node.Services.GetRequiredService<IBundleStore>().PutAsync(GridServer.Zip(CountingPolicy), Ct)).Code;
        var created = await nodeClient.Post("/policy", $$"""{"name": "{{name}}", "version": "1.0", "release_tag": "test", "code": "{{code}}", "type": "python_class_v1"}""");
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        return $"{name}:1.0-test";
    }

    private static async Task<string> RegisterExecutorAsync(HttpClient registry, string url)
    {
        var id = Unique("node");
        var created = await registry.Post("/executor", $$"""{"executor_id": "{{id}}", "executor_host_uri": "{{url}}"}""");
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
        return id;
    }

    [Theory]
    [InlineData(ProxyDrop.BeforeAnswering)]
    [InlineData(ProxyDrop.WhileAnswering)]
    public async Task A_call_whose_connection_is_lost_after_the_node_ran_it_is_sent_again_with_the_same_id_and_runs_once(ProxyDrop drop)
    {
        await using var node = await TokenNode.StartAsync("registry", NodeToken, Ct);
        using var nodeClient = ClientOf(node);
        var policy = await RegisterOnNodeAsync(node, nodeClient);
        await using var proxy = await LossyProxy.StartAsync(node.Url, n => n == 1 ? drop : ProxyDrop.None);
        await using var registry = Registry();
        var client = registry.CreateClient();
        var executor = await RegisterExecutorAsync(client, proxy.Url);

        var answer = await client.Post($"/executor/{executor}/execute_policy", Execute(policy));

        // Before, the caller got a 503 "dropped the call ... so it was not sent again" although the policy had run.
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["runs"]!.GetValue<int>().ShouldBe(1);
        proxy.CallIds.Count.ShouldBe(2);
        proxy.CallIds.Distinct().ShouldHaveSingleItem().ShouldNotBeNullOrEmpty();
        // The policy ran once on the node: the next call there (an old caller, without an id) counts 2.
        var next = await nodeClient.Post("/execute_policy", Execute(policy));
        next.Data!["runs"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task A_node_that_loses_every_connection_after_taking_the_call_is_a_503_saying_it_ran_at_most_once()
    {
        await using var node = await TokenNode.StartAsync("registry", NodeToken, Ct);
        using var nodeClient = ClientOf(node);
        var policy = await RegisterOnNodeAsync(node, nodeClient);
        await using var proxy = await LossyProxy.StartAsync(node.Url, _ => ProxyDrop.BeforeAnswering);
        await using var registry = Registry();
        var client = registry.CreateClient();
        var executor = await RegisterExecutorAsync(client, proxy.Url);

        var answer = await client.Post($"/executor/{executor}/execute_policy", Execute(policy));

        (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString());
        answer.Message.ShouldContain("dropped the call before answering");
        answer.Message.ShouldContain($"it may have run there, at most once");
        proxy.CallIds.Count.ShouldBe(3); // the call and RemoteExecutors:ConnectRetries (2) retries, all with one id
        proxy.CallIds.Distinct().Count().ShouldBe(1);
        (await nodeClient.Post("/execute_policy", Execute(policy))).Data!["runs"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task A_deployment_waits_for_the_node_longer_than_a_call_would()
    {
        // A deployment waited only FunctionCallTimeout: an operator who shortened that for calls had every deployment whose
        // load on the node took longer (an __init__ that reads a model, requirements installed) fail with a 503.
        await using var node = await TokenNode.StartAsync("registry", NodeToken, Ct);
        await using var registry = Registry(functionCallTimeout: "00:00:01");
        var client = registry.CreateClient();
        var uri = await registry.RegisterPolicyAsync(Unique("slowload"), """
            import time

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    time.sleep(1.5)

                def eval(self, parameters, input_data, context):
                    return {"ok": True}
            """);
        var executor = await RegisterExecutorAsync(client, node.Url);

        var deployed = await client.Post($"/function/deployments/create/{executor}", $$"""{"name": "{{Unique("slowload")}}", "policy_rule_uri": "{{uri}}"}""");

        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
    }

    [Fact]
    public async Task A_function_call_the_registry_gave_up_on_while_it_waited_behind_a_slow_one_does_not_run_on_the_node()
    {
        await using var node = await TokenNode.StartAsync("registry", NodeToken, Ct);
        using var nodeClient = ClientOf(node);
        // The proxy keeps its call to the node when the registry goes (as a proxy may): the node does not see the
        // registry give up, only the budget the call carries.
        await using var proxy = await LossyProxy.StartAsync(node.Url, _ => ProxyDrop.None);
        await using var registry = Registry(functionCallTimeout: "00:00:01");
        var client = registry.CreateClient();
        var uri = await registry.RegisterPolicyAsync(Unique("fn"), CountingPolicy);
        var executor = await RegisterExecutorAsync(client, proxy.Url);
        var function = Unique("counter");
        var deployed = await client.Post($"/function/deployments/create/{executor}", $$"""{"name": "{{function}}", "policy_rule_uri": "{{uri}}"}""");
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        var deploying = proxy.Answers.Count;

        // Two slow calls at once on the function's one instance: the first to get the turn runs 1.5 s, the other waits
        // for it past the 1 s the registry waits. The registry answers both with a 503 after 1 s.
        var calls = await Task.WhenAll(
            client.Post($"/function/call_function/{function}", """{"sleep": 1.5}"""),
            client.Post($"/function/call_function/{function}", """{"sleep": 1.5}"""));

        calls.ShouldAllBe(c => c.Status == 503);
        // Once the running one is done, the next call (straight to the node, waiting as long as it takes) is the
        // instance's second run: the call that waited too long never started (before, it ran unseen and this was 3).
        var next = await nodeClient.Post($"/call_function/{function}", "{}");
        next.Status.ShouldBe(200, next.Body?.ToJsonString());
        next.Data!["runs"]!.GetValue<int>().ShouldBe(2);
        // The node refused it with a 504 (which reached the proxy, the registry having gone).
        (await proxy.AnswersAsync(deploying + 2)).Count(status => status == 504).ShouldBe(1);
    }

    [Fact]
    public async Task A_type_2_call_queued_on_the_node_past_the_registrys_wait_does_not_run_there()
    {
        await using var node = await TokenNode.StartAsync("registry", NodeToken, Ct);
        using var nodeClient = ClientOf(node);
        var policy = await RegisterOnNodeAsync(node, nodeClient);
        await using var proxy = await LossyProxy.StartAsync(node.Url, _ => ProxyDrop.None);
        await using var registry = Registry(overhead: "00:00:00.3");
        var client = registry.CreateClient();
        var executor = await RegisterExecutorAsync(client, proxy.Url);
        // The node learns that the policy writes its context: from now on its calls on one context run one at a time.
        (await nodeClient.Post("/execute_policy", Execute(policy))).Data!["runs"]!.GetValue<int>().ShouldBe(1);

        // A slow call holds the context (here the test holds its lock) while the registry's call waits behind it, past
        // the 0.5 s the registry waits (timeout_seconds 0.2 plus Overhead 0.3): the registry answers 503 and goes.
        using (await node.Services.GetRequiredService<KeyedLocks>().AcquireAsync(policy, Ct))
        {
            var given = new JsonObject { ["policy_rule_uri"] = policy, ["input_data"] = new JsonObject(), ["timeout_seconds"] = 0.2 };
            var answer = await client.Post($"/executor/{executor}/execute_policy", given.ToJsonString());
            (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), answer.Body?.ToJsonString());
            // The node counts the budget from when the call reached it, after the registry started waiting, so the
            // registry's 503 can come a little before the node's budget runs out (by the time the call took to get
            // there, long on a loaded host). The budget sent is at most the registry's 0.5 s: that much later it has
            // run out on the node too, whatever the call's way there took.
            await Task.Delay(TimeSpan.FromMilliseconds(500), Ct);
        }

        // Its turn came after that: it did not start (504 to the proxy, which kept waiting), and the counter did not move.
        (await proxy.AnswersAsync(1)).ShouldBe([504]);
        (await nodeClient.Post("/execute_policy", Execute(policy))).Data!["runs"]!.GetValue<int>().ShouldBe(2);
    }

    [Fact]
    public async Task A_function_call_sent_twice_with_one_id_runs_once_and_a_bad_budget_header_is_a_400_naming_it()
    {
        await using var node = await TokenNode.StartAsync("registry", NodeToken, Ct);
        using var nodeClient = ClientOf(node);
        await using var registry = Registry();
        var client = registry.CreateClient();
        var uri = await registry.RegisterPolicyAsync(Unique("fn"), CountingPolicy);
        var executor = await RegisterExecutorAsync(client, node.Url);
        var function = Unique("once");
        (await client.Post($"/function/deployments/create/{executor}", $$"""{"name": "{{function}}", "policy_rule_uri": "{{uri}}"}""")).Status.ShouldBe(200);
        var id = NodeHeaders.NewCallId();

        var first = await nodeClient.Call(HttpMethod.Post, $"/call_function/{function}", "{}", configure: r => r.Headers.Add(NodeHeaders.CallId, id));
        var again = await nodeClient.Call(HttpMethod.Post, $"/call_function/{function}", "{}", configure: r => r.Headers.Add(NodeHeaders.CallId, id));
        var badBudget = await nodeClient.Call(HttpMethod.Post, $"/call_function/{function}", "{}", configure: r => r.Headers.Add(NodeHeaders.TimeoutMs, "soon"));

        first.Data!["runs"]!.GetValue<int>().ShouldBe(1);
        again.Data!["runs"]!.GetValue<int>().ShouldBe(1);
        badBudget.Status.ShouldBe(400, badBudget.Body?.ToJsonString());
        badBudget.Body!.ToJsonString().ShouldContain(NodeHeaders.TimeoutMs);
        (await client.Post($"/function/call_function/{function}", "{}")).Data!["runs"]!.GetValue<int>().ShouldBe(2);
    }
}

public enum ProxyDrop { None, BeforeAnswering, WhileAnswering }

/// <summary>
/// A reverse proxy on loopback in front of a node: it forwards each request whole and waits for the node's whole answer
/// (not stopping when its own caller goes), then, as <c>drop</c> says for the n-th request, passes it on or loses the
/// connection before or part way through the answer. Records each request's call id and each answer's status.
/// </summary>
public sealed class LossyProxy : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly HttpClient upstream = new() { Timeout = Timeout.InfiniteTimeSpan };
    private int requests;

    private LossyProxy(WebApplication app) => this.app = app;

    public string Url { get; private set; } = "";
    public ConcurrentQueue<string?> CallIds { get; } = new();
    public ConcurrentQueue<int> Answers { get; } = new();
    private readonly SemaphoreSlim answered = new(0);

    /// <summary>The statuses of the node's answers, once it has given at least <paramref name="count"/>.</summary>
    public async Task<int[]> AnswersAsync(int count)
    {
        for (var i = 0; i < count; i++) await answered.WaitAsync(TestContext.Current.CancellationToken);
        answered.Release(count);
        return [.. Answers];
    }

    public static async Task<LossyProxy> StartAsync(string target, Func<int, ProxyDrop> drop)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var proxy = new LossyProxy(app);
        app.Run(context => proxy.ForwardAsync(context, target.TrimEnd('/'), drop(Interlocked.Increment(ref proxy.requests))));
        await app.StartAsync(TestContext.Current.CancellationToken);
        proxy.Url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return proxy;
    }

    private async Task ForwardAsync(HttpContext context, string target, ProxyDrop drop)
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body, CancellationToken.None);
        using var request = new HttpRequestMessage(new HttpMethod(context.Request.Method), target + context.Request.Path + context.Request.QueryString)
        {
            Content = new ByteArrayContent(body.ToArray()),
        };
        request.Content.Headers.ContentType = context.Request.ContentType is { } type ? System.Net.Http.Headers.MediaTypeHeaderValue.Parse(type) : null;
        foreach (var (name, values) in context.Request.Headers)
            if (name.StartsWith("X-", StringComparison.OrdinalIgnoreCase) || name == "Authorization")
                request.Headers.TryAddWithoutValidation(name, values.ToArray());
        CallIds.Enqueue(context.Request.Headers[NodeHeaders.CallId].FirstOrDefault());
        using var answer = await upstream.SendAsync(request, CancellationToken.None);
        var bytes = await answer.Content.ReadAsByteArrayAsync(CancellationToken.None);
        Answers.Enqueue((int)answer.StatusCode);
        answered.Release();
        if (drop == ProxyDrop.BeforeAnswering)
        {
            context.Abort();
            return;
        }
        context.Response.StatusCode = (int)answer.StatusCode;
        context.Response.ContentType = answer.Content.Headers.ContentType?.ToString();
        context.Response.ContentLength = bytes.Length;
        try
        {
            if (drop == ProxyDrop.WhileAnswering)
            {
                await context.Response.Body.WriteAsync(bytes.AsMemory(0, bytes.Length / 2), CancellationToken.None);
                await context.Response.Body.FlushAsync(CancellationToken.None);
                context.Abort();
                return;
            }
            await context.Response.Body.WriteAsync(bytes, CancellationToken.None);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // The registry went first.
        }
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync(CancellationToken.None);
        await app.DisposeAsync();
        upstream.Dispose();
    }
}
