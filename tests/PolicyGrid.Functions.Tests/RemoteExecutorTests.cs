using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// A function deployed on an http:// executor runs on that node, reached through its deployment routes with the
/// registry's node token; the registry hands the node the policy's bundle, which the node did not hold.
/// </summary>
public sealed class RemoteExecutorTests
{
    private const string NodeToken = "node-token-for-the-registry-0123456789";

    [Fact]
    public async Task A_function_on_a_remote_executor_node_is_deployed_called_managed_and_removed_there()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await TokenNode.StartAsync("registry", NodeToken, ct);
        var nodeUrl = node.Url;
        await using var registry = new GridServer { Settings = { ["PolicyGrid:Runtime:RemoteExecutors:Token"] = NodeToken } };
        var client = registry.CreateClient();
        var policy = await registry.RegisterPolicyAsync("counting", CountingPolicy.Source);
        // The bundle as the registry stored it.
        var code = (await client.Send(HttpMethod.Get, $"/policy/{policy}")).Data!["code"]!.GetValue<string>();
        var sha256 = code["bundle://sha256/".Length..];
        // The node does not hold the bundle: the registry uploads it with the deployment.
        (await node.Services.GetRequiredService<IBundleStore>().GetAsync(sha256, ct)).ShouldBeNull();
        (await client.Send(HttpMethod.Post, "/executor", new JsonObject { ["executor_id"] = "edge", ["executor_host_uri"] = nodeUrl })).Status.ShouldBe(200);

        var deployed = await client.Send(HttpMethod.Post, "/function/deployments/create/edge", new JsonObject { ["name"] = "far", ["policy_rule_uri"] = policy });

        deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        (await node.Services.GetRequiredService<IBundleStore>().GetAsync(sha256, ct)).ShouldNotBeNull();
        deployed.Data!["function_executor_uri"]!.GetValue<string>().ShouldBe(nodeUrl);
        (await client.Send(HttpMethod.Post, "/function/call_function/far", new JsonObject())).Data!["count"]!.GetValue<int>().ShouldBe(1);
        (await client.Send(HttpMethod.Post, "/function/far/management", new JsonObject { ["action"] = "set", ["data"] = new JsonObject { ["count"] = 7 } })).Status.ShouldBe(200);
        (await client.Send(HttpMethod.Post, "/function/call_function/far", new JsonObject())).Data!["count"]!.GetValue<int>().ShouldBe(8);
        var failing = await client.Send(HttpMethod.Post, "/function/call_function/far", new JsonObject { ["fail"] = true });
        failing.Status.ShouldBe(422);
        failing.Message.ShouldContain("asked to fail");

        // It runs on the node, not on the registry's own host.
        using var direct = new HttpClient { BaseAddress = new Uri(nodeUrl) };
        direct.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", NodeToken);
        (await direct.Send(HttpMethod.Post, "/call_function/far", new JsonObject())).Data!["count"]!.GetValue<int>().ShouldBe(9);

        (await client.Send(HttpMethod.Delete, "/function/deployments/remove/far")).Status.ShouldBe(200);
        (await direct.Send(HttpMethod.Post, "/call_function/far", new JsonObject())).Status.ShouldBe(404);
    }

    [Fact]
    public async Task A_call_of_a_function_on_a_remote_node_is_recorded_on_the_registry_with_its_caller_and_on_the_node_with_the_registrys_identity()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await TokenNode.StartAsync("registry", NodeToken, ct);
        await using var registry = new GridServer { Settings = { ["PolicyGrid:Runtime:RemoteExecutors:Token"] = NodeToken } };
        var client = registry.CreateClient();
        var policy = await registry.RegisterPolicyAsync("counting", CountingPolicy.Source);
        (await client.Send(HttpMethod.Post, "/executor", new JsonObject { ["executor_id"] = "edge", ["executor_host_uri"] = node.Url })).Status.ShouldBe(200);
        (await client.Send(HttpMethod.Post, "/function/deployments/create/edge", new JsonObject { ["name"] = "far_audited", ["policy_rule_uri"] = policy })).Status.ShouldBe(200);

        (await client.Send(HttpMethod.Post, "/function/call_function/far_audited", new JsonObject())).Status.ShouldBe(200);
        (await client.Send(HttpMethod.Post, "/function/call_function/far_audited", new JsonObject { ["fail"] = true })).Status.ShouldBe(422);
        (await client.Send(HttpMethod.Post, "/function/far_audited/management", new JsonObject { ["action"] = "peek" })).Status.ShouldBe(200);

        var here = (await client.Send(HttpMethod.Post, "/decisions/query", new JsonObject { ["function_id"] = "far_audited" })).Data!.AsArray();
        using var direct = new HttpClient { BaseAddress = new Uri(node.Url) };
        direct.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", NodeToken);
        var there = (await direct.Send(HttpMethod.Post, "/decisions/query", new JsonObject { ["function_id"] = "far_audited" })).Data!.AsArray();

        foreach (var (log, caller) in new[] { (here, "anonymous"), (there, "registry") })
        {
            log.Select(d => (d!["kind"]!.GetValue<string>(), d["status"]!.GetValue<int>())).ShouldBe(
                [("function_management", 200), ("function_call", 422), ("function_call", 200)]);
            log.ShouldAllBe(d => d!["caller"]!.GetValue<string>() == caller && d["policy_rule_uri"]!.GetValue<string>() == policy
                && d["bundle_sha256"]!.GetValue<string>().Length == 64);
        }
        there[0]!["input_sha256"]!.GetValue<string>().ShouldBe(here[0]!["input_sha256"]!.GetValue<string>(), "the same management action");
    }

    [Fact]
    public async Task The_node_token_goes_only_to_nodes_listed_in_TokenNodes()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await TokenNode.StartAsync("registry", NodeToken, ct);
        var nodeUrl = node.Url;

        // Listed under another spelling of the same address: the token goes, and the deployment runs there.
        var port = new Uri(nodeUrl).Port;
        await using (var listing = new GridServer { Settings = { ["PolicyGrid:Runtime:RemoteExecutors:Token"] = NodeToken,
            ["PolicyGrid:Runtime:RemoteExecutors:TokenNodes:0"] = $"HTTP://127.0.0.1:{port}/" } })
        {
            var client = listing.CreateClient();
            var policy = await listing.RegisterPolicyAsync("counting", CountingPolicy.Source);
            (await client.Send(HttpMethod.Post, "/executor", new JsonObject { ["executor_id"] = "edge", ["executor_host_uri"] = nodeUrl })).Status.ShouldBe(200);
            var deployed = await client.Send(HttpMethod.Post, "/function/deployments/create/edge", new JsonObject { ["name"] = "listed", ["policy_rule_uri"] = policy });
            deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
        }

        // Not listed (a writer registered an address of their own): the call goes without the token, and the refusal says why.
        await using var other = new GridServer { Settings = { ["PolicyGrid:Runtime:RemoteExecutors:Token"] = NodeToken,
            ["PolicyGrid:Runtime:RemoteExecutors:TokenNodes:0"] = "http://nodes.internal:8080" } };
        var otherClient = other.CreateClient();
        var otherPolicy = await other.RegisterPolicyAsync("counting", CountingPolicy.Source);
        (await otherClient.Send(HttpMethod.Post, "/executor", new JsonObject { ["executor_id"] = "edge", ["executor_host_uri"] = nodeUrl })).Status.ShouldBe(200);

        var refused = await otherClient.Send(HttpMethod.Post, "/function/deployments/create/edge", new JsonObject { ["name"] = "unlisted", ["policy_rule_uri"] = otherPolicy });

        refused.Status.ShouldBe(401, refused.Body?.ToJsonString());
        refused.Message.ShouldContain($"executor node {nodeUrl}");
        var typeTwo = await otherClient.Send(HttpMethod.Post, "/executor/edge/execute_policy", new JsonObject { ["policy_rule_uri"] = otherPolicy, ["input_data"] = new JsonObject() });
        typeTwo.Status.ShouldBe(401, typeTwo.Body?.ToJsonString());
        typeTwo.Message.ShouldContain("this server sent no token: the node is not in PolicyGrid:Runtime:RemoteExecutors:TokenNodes");
    }

    [Fact]
    public async Task A_registry_without_the_node_token_is_refused_by_the_node_and_says_so()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await TokenNode.StartAsync("registry", NodeToken, ct);
        var nodeUrl = node.Url;
        await using var registry = new GridServer();
        var client = registry.CreateClient();
        var policy = await registry.RegisterPolicyAsync("counting", CountingPolicy.Source);
        (await client.Send(HttpMethod.Post, "/executor", new JsonObject { ["executor_id"] = "edge", ["executor_host_uri"] = nodeUrl })).Status.ShouldBe(200);

        var refused = await client.Send(HttpMethod.Post, "/function/deployments/create/edge", new JsonObject { ["name"] = "far", ["policy_rule_uri"] = policy });

        refused.Status.ShouldBe(401, refused.Body?.ToJsonString());
        refused.Message.ShouldContain($"executor node {nodeUrl}");
        (await client.Send(HttpMethod.Post, "/function/call_function/far", new JsonObject())).Status.ShouldBe(404);
    }
}
