using System.Net;
using System.Text.Json.Nodes;
using PolicyGrid.Api.Auth;
using PolicyGrid.Cli.Client;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// Policy code may not use the API of a server without tokens: it read every policy's parameters through it and could
/// change or delete any policy. Other loopback callers keep the open API.
/// </summary>
public sealed class WorkerCallerGuardTests(KestrelGridServer server, KestrelGridServerSharingItsUid sharing)
    : IClassFixture<KestrelGridServer>, IClassFixture<KestrelGridServerSharingItsUid>
{
    // Calls the server's API from eval and answers what came back.
    private const string Prober = """
        import json, urllib.request, urllib.error

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass

            def eval(self, parameters, input_data, context):
                request = urllib.request.Request(input_data["url"] + "/policy/query", data=b"{}", method="POST",
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=5) as answer:
                        return {"status": answer.status, "body": json.loads(answer.read())}
                except urllib.error.HTTPError as e:
                    return {"status": e.code, "body": json.loads(e.read())}
        """;

    [Fact]
    public async Task A_policy_calling_the_open_api_of_its_own_server_is_refused_and_other_callers_are_not()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
            Assert.Skip("workers run as uids of their own only under a root server");
        await ProbeAsync(server, "a policy worker, uid ");
    }

    [Fact]
    public async Task A_policy_is_refused_where_its_worker_runs_as_the_servers_own_uid_and_other_callers_are_not()
    {
        // A non-root server's workers run as its own uid, as curl does: told apart by uid, a policy read every policy
        // and could delete any through the open API. Its connection is now traced to the worker's session.
        if (!OperatingSystem.IsLinux()) Assert.Skip("/proc is Linux's");
        await ProbeAsync(sharing, "a process of policy worker ");
    }

    private static async Task ProbeAsync(KestrelGridServer server, string caller)
    {
        var dir = Directory.CreateTempSubdirectory("pg-guard-policy-").FullName;
        try
        {
            var address = server.Address.ToString().TrimEnd('/');
            using var client = new HttpClient { BaseAddress = server.Address };
            Directory.CreateDirectory(Path.Combine(dir, "code"));
            File.WriteAllText(Path.Combine(dir, "code", "function.py"), Prober);
            var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(Samples.Policy("all_of"), "manifest.json")))!.AsObject();
            manifest["name"] = Unique("prober");
            manifest["policy_output_schema"] = new JsonObject();
            manifest["resource_estimates"] = new JsonObject { ["timeout_seconds"] = 10 };
            manifest["code"] = await Onboarding.UploadAsync(client, BundleZipper.Zip(dir));
            var created = await client.Post("/policy", manifest.ToJsonString());
            created.Status.ShouldBe(200, created.Body?.ToJsonString());
            var uri = created.Data!["policy_rule_uri"]!.GetValue<string>();

            var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, $$"""{"url": "{{address}}"}"""));
            answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
            answer.Data!["status"]!.GetValue<int>().ShouldBe(403, answer.Data.ToJsonString());
            answer.Data["body"]!["code"]!.GetValue<string>().ShouldBe("forbidden");
            answer.Data["body"]!["message"]!.GetValue<string>().ShouldContain("no calls from policy code");
            answer.Data["body"]!["message"]!.GetValue<string>().ShouldContain(caller);

            (await client.Post("/policy/query", "{}")).Status.ShouldBe(200); // this process is no worker
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Finds_the_uid_of_a_loopback_peer_in_the_kernels_socket_table()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("/proc/net/tcp is Linux's");
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var peer = new System.Net.Sockets.TcpClient();
        peer.Connect(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        using var accepted = listener.AcceptTcpClient();
        var remote = (IPEndPoint)accepted.Client.RemoteEndPoint!;
        var local = (IPEndPoint)accepted.Client.LocalEndPoint!;
        var own = int.Parse(File.ReadAllLines("/proc/self/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Split('\t', StringSplitOptions.RemoveEmptyEntries)[1]);
        WorkerCallerGuard.PeerUid(remote.Address, remote.Port, local.Address, local.Port).ShouldBe(own);
        WorkerCallerGuard.PeerUid(remote.Address.MapToIPv6(), remote.Port, local.Address.MapToIPv6(), local.Port).ShouldBe(own);
        WorkerCallerGuard.PeerUid(remote.Address, 1, local.Address, local.Port).ShouldBeNull();
    }
}
