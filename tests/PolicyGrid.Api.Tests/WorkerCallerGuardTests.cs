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

    // Calls the API from a process that left the worker's session with setsid: one the worker waits for ("wait"), or
    // one that setsid --fork orphaned, which the server (the subreaper) adopted, and that calls only once adopted ("orphan").
    private const string SetsidProber = """
        import json, os, subprocess, sys

        CLIENT = r'''
        import json, os, sys, time, urllib.request, urllib.error
        if sys.argv[2] == "orphan":
            for _ in range(1000):  # until setsid's first process (in the worker's session) has exited and the server adopted this one
                try:
                    if os.getsid(os.getppid()) != int(sys.argv[3]): break
                except OSError:
                    pass
                time.sleep(0.01)
        request = urllib.request.Request(sys.argv[1] + "/policy/query", data=b"{}", method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                status, body = answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as e:
            status, body = e.code, json.loads(e.read())
        print(json.dumps({"status": status, "body": body, "sid": os.getsid(0), "ppid": os.getppid()}))
        '''

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass

            def eval(self, parameters, input_data, context):
                mode = input_data["mode"]
                setsid = ["setsid", "--fork"] if mode == "orphan" else ["setsid"]
                read, write = os.pipe()
                child = subprocess.Popen(setsid + [sys.executable, "-I", "-S", "-c", CLIENT, input_data["url"], mode, str(os.getsid(0))],
                                         stdout=write, stderr=subprocess.DEVNULL)
                os.close(write)
                child.wait()
                out = b""
                while chunk := os.read(read, 65536):  # until the client, orphaned or not, exits
                    out += chunk
                os.close(read)
                answer = json.loads(out)
                answer["worker_sid"] = os.getsid(0)
                return answer
        """;

    [Theory]
    [InlineData("wait")]
    [InlineData("orphan")]
    public async Task A_policy_process_that_left_its_workers_session_with_setsid_is_refused_too(string mode)
    {
        // setsid took a policy's process out of the worker's session, where the guard looked for it, and it read and
        // could change every policy through the open API (200). It is still under the server (a subreaper, so it adopts
        // what a policy orphans), through the worker or as an orphan out of the server's session.
        if (!OperatingSystem.IsLinux()) Assert.Skip("/proc is Linux's");
        var uri = await StoreAsync(sharing, SetsidProber, "setsid-prober");
        using var client = new HttpClient { BaseAddress = sharing.Address };
        var address = sharing.Address.ToString().TrimEnd('/');
        var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, $$"""{"url": "{{address}}", "mode": "{{mode}}"}"""));
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        var data = answer.Data!;
        data["sid"]!.GetValue<int>().ShouldNotBe(data["worker_sid"]!.GetValue<int>(), "the client left the worker's session");
        if (mode == "orphan") data["ppid"]!.GetValue<int>().ShouldBe(Environment.ProcessId, "the orphan was adopted by the server");
        data["status"]!.GetValue<int>().ShouldBe(403, data.ToJsonString());
        data["body"]!["code"]!.GetValue<string>().ShouldBe("forbidden");
        data["body"]!["message"]!.GetValue<string>().ShouldContain("no calls from policy code");
    }

    [Fact]
    public async Task A_process_the_server_itself_starts_keeps_the_open_api()
    {
        // The server's own children (pip, probes, job processes) stay in its session and are no policy's: a child of
        // this (the server's) process calling the API is not refused.
        if (!OperatingSystem.IsLinux()) Assert.Skip("/proc is Linux's");
        await StoreAsync(sharing, Prober, "prober"); // workers are live
        var start = new System.Diagnostics.ProcessStartInfo("python3") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in new[] { "-c", $$"""
            import urllib.request
            request = urllib.request.Request("{{sharing.Address.ToString().TrimEnd('/')}}/policy/query", data=b"{}", method="POST", headers={"Content-Type": "application/json"})
            print(urllib.request.urlopen(request, timeout=5).status)
            """ }) start.ArgumentList.Add(arg);
        using var child = System.Diagnostics.Process.Start(start)!;
        var output = await child.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        await child.WaitForExitAsync(TestContext.Current.CancellationToken);
        output.Trim().ShouldBe("200");
    }

    [Fact]
    public async Task A_policy_in_a_local_job_is_refused()
    {
        // A local job runs its policy in a job process with a worker pool of its own, which the guard did not know:
        // the job's policy got 200 from the open API.
        if (!OperatingSystem.IsLinux()) Assert.Skip("/proc is Linux's");
        var uri = await StoreAsync(sharing, Prober, "job-prober");
        using var client = new HttpClient { BaseAddress = sharing.Address };
        var address = sharing.Address.ToString().TrimEnd('/');
        var submitted = await client.Post("/jobs/submit/local", $$$"""{"name": "j", "policy_rule_uri": "{{{uri}}}", "inputs": {"url": "{{{address}}}"}}""");
        submitted.Status.ShouldBe(200, submitted.Body?.ToJsonString());
        var done = await client.Get($"/jobs/{submitted.Data!["job_id"]!.GetValue<string>()}?wait=120");
        done.Data!["status"]!.GetValue<string>().ShouldBe("succeeded", done.Data.ToJsonString());
        done.Data["result"]!["status"]!.GetValue<int>().ShouldBe(403, done.Data.ToJsonString());
        done.Data["result"]!["body"]!["message"]!.GetValue<string>().ShouldContain("no calls from policy code");
    }

    [Fact]
    public void Tells_policy_processes_from_the_servers_own_by_descent_and_session()
    {
        const int server = 100, shell = 50;
        var table = new Dictionary<int, WorkerCallerGuard.ProcessEntry>
        {
            [shell] = new(1, shell, 10),
            [server] = new(shell, shell, 20),
            [101] = new(server, 101, 30),   // a live worker (a session leader)
            [102] = new(101, 101, 31),      // its child, in its session
            [103] = new(101, 103, 32),      // its child that called setsid
            [104] = new(103, 103, 33),      // and that one's child
            [105] = new(server, 105, 34),   // an orphan a policy left, adopted by the server, out of its session
            [106] = new(server, 101, 35),   // an orphan that kept a dead worker's session
            [110] = new(server, shell, 40), // pip, a probe: the server's own, in its session
            [111] = new(110, shell, 41),    // pip's child
            [120] = new(server, shell, 50), // a job process (it may call the API; its workers may not)
            [121] = new(120, 121, 51),      // the job's worker
            [122] = new(121, 122, 52),      // a process its policy started with setsid
            [200] = new(shell, shell, 60),  // the operator's curl, not under the server
        };
        var found = WorkerCallerGuard.PolicyProcessesIn(table, server, new HashSet<int> { 101 }, new HashSet<int> { 120 }).ToDictionary();
        found.Keys.Order().ShouldBe([101, 102, 103, 104, 105, 106, 121, 122]); // not 120, the job process, which runs no policy code
        found[104].ShouldContain("policy worker 101");
        found[122].ShouldContain("local job process 120");
        found[105].ShouldContain("left its worker's session");

        // Without the job registered (a job process of an earlier server is re-attached; here, not under it), its worker is still told by its session.
        WorkerCallerGuard.PolicyProcessesIn(table, server, new HashSet<int> { 101 }, new HashSet<int>()).Select(p => p.Key).ShouldContain(122);

        // A policy process that got the pid of the server's dead session leader and called setsid made a session with
        // the server's id: then nothing under the server passes for its own, neither while that process lives (started
        // after the server) nor once it is gone.
        table[shell] = new(server, shell, 70);
        table[107] = new(server, shell, 71); // its child, adopted by the server once it exited
        var forged = WorkerCallerGuard.PolicyProcessesIn(table, server, new HashSet<int>(), new HashSet<int>()).Select(p => p.Key).ToHashSet();
        forged.ShouldContain(107);
        forged.ShouldContain(110);
        table.Remove(shell);
        forged = WorkerCallerGuard.PolicyProcessesIn(table, server, new HashSet<int>(), new HashSet<int>()).Select(p => p.Key).ToHashSet();
        forged.ShouldContain(107);
        forged.ShouldContain(110);
    }

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

    private static async Task<string> StoreAsync(KestrelGridServer server, string code, string name)
    {
        var dir = Directory.CreateTempSubdirectory("pg-guard-policy-").FullName;
        try
        {
            using var client = new HttpClient { BaseAddress = server.Address };
            Directory.CreateDirectory(Path.Combine(dir, "code"));
            File.WriteAllText(Path.Combine(dir, "code", "function.py"), code);
            var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(Samples.Policy("all_of"), "manifest.json")))!.AsObject();
            manifest["name"] = Unique(name);
            manifest["policy_output_schema"] = new JsonObject();
            manifest["resource_estimates"] = new JsonObject { ["timeout_seconds"] = 30 };
            manifest["code"] = await Onboarding.UploadAsync(client, BundleZipper.Zip(dir));
            var created = await client.Post("/policy", manifest.ToJsonString());
            created.Status.ShouldBe(200, created.Body?.ToJsonString());
            var uri = created.Data!["policy_rule_uri"]!.GetValue<string>();
            return uri;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
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
