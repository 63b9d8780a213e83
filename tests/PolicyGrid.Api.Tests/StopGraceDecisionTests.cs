using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using StopGrace = PolicyGrid.Api.Envelope.StopGrace;
using PolicyGrid.Cli;
using PolicyGrid.Runtime.Execution;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// What the decision log says of a call the server's stop ended (<see cref="StopGrace"/>): the 503 its caller was
/// answered, not the 499 <c>cancelled</c> of a caller that went. A caller that does go stays 499.
/// </summary>
public sealed class StopGraceDecisionTests : IAsyncLifetime
{
    // Writes the marker it is given (so the test knows it runs), then sleeps far past the test.
    private const string SlowPolicy = """
        import time
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                open(input_data["marker"], "w").close()
                time.sleep(60)
                return {"slept": True}
            def management(self, action, data):
                open(data["marker"], "w").close()
                time.sleep(60)
                return {}
        """;

    private readonly StoppingLifetime _lifetime = new();
    private readonly DirectoryInfo _markers = Directory.CreateTempSubdirectory("pg-stop-decision-");
    private GridServer _server = null!;
    private HttpClient _client = null!;
    private string _policy = "";

    public async ValueTask InitializeAsync()
    {
        // A policy's worker may run as another user (the server as root): it must be able to write the markers here.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(_markers.FullName, (UnixFileMode)0b111_111_111);
        _server = new GridServer
        {
            PythonWorkers = 8, // one for each call held at once
            Settings = new() { ["PolicyGrid:Runtime:Pool:PrivateTemp"] = "false", ["PolicyGrid:Runtime:Execution:DefaultTimeout"] = "00:01:30" },
            // No shutdown time at all: the grace runs out the moment the (test's) stop begins.
            TestServices = services => services.Replace(ServiceDescriptor.Singleton(sp =>
                new StopGrace(_lifetime, Options.Create(new HostOptions { ShutdownTimeout = TimeSpan.Zero }), sp.GetRequiredService<ServerStop>()))),
        };
        _client = _server.CreateClient();
        _client.Timeout = TimeSpan.FromSeconds(60);
        _policy = await _server.RegisterPolicyAsync("slow", SlowPolicy);
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        try { _markers.Delete(recursive: true); } catch (IOException) { }
    }

    private string Marker(string name) => Path.Combine(_markers.FullName, name);

    private static JsonObject Input(string marker) => new() { ["marker"] = marker };

    private async Task Deploy(string function)
    {
        var deployed = await _client.Send(HttpMethod.Post, "/function/deployments/create/local",
            new JsonObject { ["name"] = function, ["policy_rule_uri"] = _policy, ["replicas"] = 1 });
        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
    }

    private async Task UntilRunning(Dictionary<string, Task<Answer>> calls)
    {
        while (true)
        {
            foreach (var (name, call) in calls)
                if (call.IsCompleted) Assert.Fail($"{name} ended before the stop: {(await call).Body?.ToJsonString()}");
            if (calls.Keys.All(name => File.Exists(Marker(name)))) return;
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    private async Task<JsonArray> Decisions() =>
        (await _client.Send(HttpMethod.Post, "/decisions/query", new JsonObject())).Data!.AsArray();

    [Fact]
    public async Task Every_call_the_servers_stop_ended_is_recorded_as_the_503_its_caller_was_answered()
    {
        // The node a Type 2 call is forwarded to: the registry's stop ends the forward, and the registry answers 503.
        var data = Directory.CreateTempSubdirectory("pg-stop-node-").FullName;
        var node = PolicyGridApp.Build(["--urls", "http://127.0.0.1:0", "--data", data, "--shutdownTimeoutSeconds=2",
            "--PolicyGrid:Runtime:Pool:PrivateTemp=false", "--PolicyGrid:Runtime:Execution:DefaultTimeout=00:01:30"]);
        await node.StartAsync(TestContext.Current.CancellationToken);
        try
        {
            var nodeAddress = node.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            using var nodeClient = new HttpClient { BaseAddress = new Uri(nodeAddress) };
            var onNode = await nodeClient.Send(HttpMethod.Post, "/policy", new JsonObject
            {
                ["name"] = "slow", ["version"] = "1.0", ["release_tag"] = "test", ["code"] = await Onboarding.UploadAsync(nodeClient, GridServer.Zip(SlowPolicy)), ["type"] = "python_class_v1",
            });
            onNode.Status.ShouldBe(200, onNode.Body?.ToJsonString());
            (await _client.Send(HttpMethod.Post, "/executor", new JsonObject { ["executor_id"] = "node", ["executor_host_uri"] = nodeAddress })).Status.ShouldBe(200);
            await Deploy("called");
            await Deploy("managed");
            await Deploy("graphed");
            await Deploy("node_called");
            var graph = await _client.Send(HttpMethod.Post, "/graphs", new JsonObject
            {
                ["graph_name"] = "stopped", ["graph_version"] = "1.0", ["graph_release_tag"] = "test",
                ["graph_function_ids"] = new JsonArray("graphed"), ["graph_connection_data"] = new JsonObject(),
            });
            graph.Status.ShouldBe(200, graph.Body?.ToJsonString());
            var graphUri = graph.Data!["graph_uri"]!.GetValue<string>();

            var calls = new Dictionary<string, Task<Answer>>
            {
                ["execute"] = _client.Send(HttpMethod.Post, "/executor/local/execute_policy",
                    new JsonObject { ["policy_rule_uri"] = _policy, ["input_data"] = Input(Marker("execute")), ["timeout_seconds"] = 90 }),
                ["management"] = _client.Send(HttpMethod.Post, "/executor/local/management",
                    new JsonObject { ["policy_rule_uri"] = _policy, ["action"] = "hold", ["data"] = Input(Marker("management")), ["timeout_seconds"] = 90 }),
                ["forwarded"] = _client.Send(HttpMethod.Post, "/executor/node/execute_policy",
                    new JsonObject { ["policy_rule_uri"] = _policy, ["input_data"] = Input(Marker("forwarded")), ["timeout_seconds"] = 90 }),
                ["called"] = _client.Send(HttpMethod.Post, "/function/call_function/called", Input(Marker("called"))),
                ["managed"] = _client.Send(HttpMethod.Post, "/function/managed/management",
                    new JsonObject { ["action"] = "hold", ["data"] = Input(Marker("managed")) }),
                ["graphed"] = _client.Send(HttpMethod.Post, "/graph/execute_graph",
                    new JsonObject { ["graph_uri"] = graphUri, ["input_data"] = Input(Marker("graphed")) }),
                // This server as a node: a registry's calls carry a call id, and run on when their request goes (for the
                // retry to find their answer); the stop still ends them, and their caller hears why.
                ["node_executed"] = _client.Exchange(NodeCall("/execute_policy",
                    new JsonObject { ["policy_rule_uri"] = _policy, ["input_data"] = Input(Marker("node_executed")), ["timeout_seconds"] = 90 })),
                ["node_called"] = _client.Exchange(NodeCall("/call_function/node_called", Input(Marker("node_called")))),
            };
            await UntilRunning(calls);

            _lifetime.StopApplication();

            foreach (var (name, call) in calls)
            {
                var answer = await call;
                (answer.Status, answer.Code).ShouldBe((503, "backend_unavailable"), $"{name}: {answer.Body?.ToJsonString()}");
            }
            // The graph answers as soon as its run is cancelled (its node call is awaited with WaitAsync, so a policy that
            // ignores cancellation cannot hold the answer), and its node's call records itself when it has unwound: under
            // load that can be after every answer. So the records are awaited, up to a deadline, not read once.
            string[] recorded = [];
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            do
            {
                await _server.Service<DecisionLog>().FlushAsync(TestContext.Current.CancellationToken);
                recorded = [.. (await Decisions()).Select(d => d!.AsObject())
                    .Select(d => $"{d["kind"]} {d["function_id"]?.GetValue<string>() ?? d["policy_rule_uri"]!.GetValue<string>()}: {d["status"]} {d["error_code"]}")
                    .Order()];
                if (recorded.Length >= 8) break;
                await Task.Delay(100, TestContext.Current.CancellationToken);
            } while (DateTime.UtcNow < until);
            recorded.ShouldBe([
                "execute slow:1.0-test: 503 backend_unavailable", // local
                "execute slow:1.0-test: 503 backend_unavailable", // forwarded to the node
                "execute slow:1.0-test: 503 backend_unavailable", // this server as a node
                "function_call called: 503 backend_unavailable",
                "function_call graphed: 503 backend_unavailable", // the graph run's node
                "function_call node_called: 503 backend_unavailable", // this server as a node
                "function_management managed: 503 backend_unavailable",
                "management slow:1.0-test: 503 backend_unavailable",
            ]);
        }
        finally
        {
            await node.StopAsync(CancellationToken.None);
            await node.DisposeAsync();
            try { Directory.Delete(data, recursive: true); } catch (IOException) { }
        }
    }

    [Fact]
    public async Task A_caller_that_goes_is_recorded_as_499_cancelled()
    {
        using var gone = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var call = _client.PostAsync("/executor/local/execute_policy", JsonContent(new JsonObject
        {
            ["policy_rule_uri"] = _policy, ["input_data"] = Input(Marker("gone")), ["timeout_seconds"] = 90,
        }), gone.Token);
        while (!File.Exists(Marker("gone")) && !call.IsCompleted) await Task.Delay(20, TestContext.Current.CancellationToken);
        File.Exists(Marker("gone")).ShouldBeTrue("the policy did not start");

        await gone.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(call);

        // Its record is written once the server has stopped the call (its worker), which the caller does not wait for.
        JsonObject? decision = null;
        while (decision is null)
        {
            await _server.Service<DecisionLog>().FlushAsync(TestContext.Current.CancellationToken);
            decision = (await Decisions()).FirstOrDefault()?.AsObject();
            if (decision is null) await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        (decision["status"]!.GetValue<int>(), decision["error_code"]!.GetValue<string>()).ShouldBe((499, "cancelled"));
    }

    private static HttpRequestMessage NodeCall(string path, JsonObject body) => new(HttpMethod.Post, path)
    {
        Content = JsonContent(body),
        Headers = { { PolicyGrid.Api.Node.NodeCallLedger.Header, Guid.NewGuid().ToString("N") } },
    };

    private static StringContent JsonContent(JsonObject body) => new(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json");
}
