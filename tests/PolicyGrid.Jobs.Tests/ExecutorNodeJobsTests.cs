using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Api.Jobs;
using PolicyGrid.Cli;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>
/// A registry and a separate executor node, each a real server (the node on Kestrel, loopback): jobs
/// forwarded over the node API, and the Kubernetes runner mode of <c>policygrid job-run</c> posting its
/// result to the node's callback with the job's token.
/// </summary>
public sealed class ExecutorNodeJobsTests : IAsyncLifetime
{
    private readonly string nodeData = Path.Combine(Path.GetTempPath(), "pg-jobs-tests", "node-" + Guid.NewGuid().ToString("N"));
    private readonly GridServer registry = new() { PythonWorkers = 1 };
    private WebApplication node = null!;
    private string nodeUrl = "";
    private HttpClient client = null!;

    public async ValueTask InitializeAsync()
    {
        node = PolicyGridApp.Build(["--data", nodeData, "--urls", "http://127.0.0.1:0"]);
        await node.StartAsync(TestContext.Current.CancellationToken);
        nodeUrl = node.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        client = registry.CreateClient();
        await registry.StoreExecutorAsync("edge", nodeUrl, new JsonObject { ["site"] = "edge" });
        // Registry and node each know the policy (as a shared catalog or a sync would make it so).
        foreach (var store in new[] { registry.Store, NodeStore })
            await StorePolicyAsync(store, node.Services.GetRequiredService<IBundleStore>());
    }

    public async ValueTask DisposeAsync()
    {
        await registry.DisposeAsync();
        await node.DisposeAsync();
        try { Directory.Delete(nodeData, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private IDocumentStore NodeStore => node.Services.GetRequiredService<IDocumentStore>();

    private string policyCode = "";

    private async Task StorePolicyAsync(IDocumentStore store, IBundleStore bundles)
    {
        var stored = await bundles.PutAsync(GridServer.Zip(LocalJobsTests.Policies));
        policyCode = stored.Code;
        var rule = PolicyRule.FromJson(new JsonObject
        {
            ["name"] = "batch", ["version"] = "1.0", ["release_tag"] = "test", ["code"] = stored.Code, ["type"] = "python_class_v1",
        });
        await store.UpsertAsync(Collections.Policies, rule.PolicyRuleUri, rule.ToJson());
    }

    [Fact]
    public async Task A_job_for_an_http_executor_runs_on_that_node_and_its_result_comes_back()
    {
        var submitted = await client.Post("/jobs/submit/edge", """{"name":"far","policy_rule_uri":"batch:1.0-test","inputs":{"mode":"echo","n":7}}""");
        submitted.Status.ShouldBe(200, submitted.Message);
        var id = submitted.Data!["job_id"]!.GetValue<string>();

        var done = (await client.Get($"/jobs/{id}?wait=120")).Data!;
        done["status"]!.GetValue<string>().ShouldBe("succeeded", done["error"]?.GetValue<string>());
        done["result"]!["echo"]!["n"]!.GetValue<int>().ShouldBe(7);
        done["executor_id"]!.GetValue<string>().ShouldBe("edge");
        var onNode = Job.FromJson((await NodeStore.GetAsync(Collections.Jobs, id))!.Body);
        onNode.Status.ShouldBe("succeeded");
    }

    [Fact]
    public async Task A_job_whose_policy_the_node_does_not_hold_fails_saying_to_register_it_on_the_node()
    {
        // What a newcomer meets registering a second serve as an executor: the policy is on the registry only.
        await NodeStore.DeleteAsync(Collections.Policies, "batch:1.0-test", null, TestContext.Current.CancellationToken);
        var submitted = await client.Post("/jobs/submit/edge", """{"policy_rule_uri":"batch:1.0-test","inputs":{"mode":"echo"}}""");
        submitted.Status.ShouldBe(200, submitted.Message);

        var done = (await client.Get($"/jobs/{submitted.Data!["job_id"]!.GetValue<string>()}?wait=60")).Data!;
        done["status"]!.GetValue<string>().ShouldBe("failed");
        var error = done["error"]!.GetValue<string>();
        error.ShouldContain("policy 'batch:1.0-test' is registered on this server but not in the registry of executor node");
        error.ShouldContain("register it on the node too");
    }

    [Fact]
    public async Task A_node_sharing_the_registrys_store_runs_the_job_the_registry_recorded()
    {
        // The Dapr registry and executor apps share one document store. The registry records the job, marks it running
        // and forwards it to the node's /create_job; the node finds that record already there and must still start it.
        var id = Guid.NewGuid().ToString();
        var recorded = Job.FromJson(new JsonObject
        {
            ["job_id"] = id, ["executor_id"] = "edge", ["policy_rule_uri"] = "batch:1.0-test", ["timeout_seconds"] = 30,
            ["inputs"] = new JsonObject { ["mode"] = "echo", ["n"] = 5 },
            ["status"] = "running", ["created_at"] = "2026-01-01T00:00:00Z", ["started_at"] = "2026-01-01T00:00:00Z",
        });
        await NodeStore.CreateAsync(Collections.Jobs, id, recorded.ToJson());
        using var nodeClient = new HttpClient { BaseAddress = new Uri(nodeUrl) };

        var accepted = await nodeClient.Post("/create_job", recorded.ToJson().ToJsonString());
        accepted.Status.ShouldBe(200, accepted.Message);
        var done = (await nodeClient.Get($"/jobs/{id}?wait=60")).Data!;

        done["status"]!.GetValue<string>().ShouldBe("succeeded", done["error"]?.GetValue<string>());
        done["result"]!["echo"]!["n"]!.GetValue<int>().ShouldBe(5);
    }

    [Fact]
    public async Task A_job_for_an_executor_that_is_the_server_itself_fails_at_once_saying_so()
    {
        await NodeStore.UpsertAsync(Collections.Executors, "loop", PolicyExecutor.FromJson(new JsonObject
        {
            ["executor_id"] = "loop", ["executor_host_uri"] = nodeUrl,
        }).ToJson());
        using var server = new HttpClient { BaseAddress = new Uri(nodeUrl) };

        var submitted = await server.Post("/jobs/submit/loop", """{"policy_rule_uri":"batch:1.0-test","inputs":{"mode":"echo"},"timeout_seconds":30}""");
        submitted.Status.ShouldBe(200, submitted.Message);
        var done = (await server.Get($"/jobs/{submitted.Data!["job_id"]!.GetValue<string>()}?wait=30")).Data!;

        // It waited on itself until the backstop deadline (timeout + 300 s), still 'running' all along.
        done["status"]!.GetValue<string>().ShouldBe("failed");
        done["error"]!.GetValue<string>().ShouldContain("points back at it");
    }

    [Fact]
    public async Task Cancelling_at_the_registry_cancels_on_the_node()
    {
        var submitted = await client.Post("/jobs/submit/edge", """{"policy_rule_uri":"batch:1.0-test","inputs":{"mode":"sleep","seconds":60},"timeout_seconds":120}""");
        var id = submitted.Data!["job_id"]!.GetValue<string>();
        // Wait until the node has the job, through the node's own long-poll API rather than sleeping.
        using var nodeClient = new HttpClient { BaseAddress = new Uri(nodeUrl) };
        for (var i = 0; i < 100 && await NodeStore.GetAsync(Collections.Jobs, id) is null; i++)
            await registry.Service<JobBoard>().GetAsync(id, TimeSpan.FromMilliseconds(100), TestContext.Current.CancellationToken);

        (await client.Delete($"/jobs/{id}")).Data!["status"]!.GetValue<string>().ShouldBe("cancelled");
        var onNode = (await nodeClient.Get($"/jobs/{id}?wait=30")).Data!;
        onNode["status"]!.GetValue<string>().ShouldBe("cancelled");
    }

    [Fact]
    public async Task A_job_whose_node_vanishes_is_recorded_timed_out_at_the_registrys_backstop_deadline()
    {
        await using var strict = new GridServer { PythonWorkers = 1, Settings = { ["PolicyGrid:Jobs:DeadlineGraceSeconds"] = "1" } };
        var http = strict.CreateClient();
        await strict.StoreExecutorAsync("edge", nodeUrl);
        await StorePolicyAsync(strict.Store, node.Services.GetRequiredService<IBundleStore>());
        var submitted = await http.Post("/jobs/submit/edge", """{"policy_rule_uri":"batch:1.0-test","inputs":{"mode":"sleep","seconds":60},"timeout_seconds":2}""");
        var id = submitted.Data!["job_id"]!.GetValue<string>();
        for (var i = 0; i < 100 && await NodeStore.GetAsync(Collections.Jobs, id) is null; i++)
            await strict.Service<JobBoard>().GetAsync(id, TimeSpan.FromMilliseconds(100), TestContext.Current.CancellationToken);
        await node.StopAsync(TestContext.Current.CancellationToken);

        var done = (await http.Get($"/jobs/{id}?wait=60")).Data!;
        done["status"]!.GetValue<string>().ShouldBe("timed_out");
        done["error"]!.GetValue<string>().ShouldContain("reported nothing");
    }

    [Fact]
    public async Task The_runner_mode_of_job_run_posts_its_result_with_the_jobs_token()
    {
        var (id, token) = await PendingOnNodeAsync();
        var exit = await RunRunnerAsync(id, token, new JsonObject { ["mode"] = "echo", ["from"] = "pod" });

        exit.ShouldBe(0);
        var done = Job.FromJson((await NodeStore.GetAsync(Collections.Jobs, id))!.Body);
        done.Status.ShouldBe("succeeded", done.Error);
        done.Result["echo"]!["from"]!.GetValue<string>().ShouldBe("pod");
        // The pod has no access to the node's store: the node records the run's decision when it stores the result.
        var decision = (await NodeDecisionsAsync(id)).ShouldHaveSingleItem();
        decision["kind"]!.GetValue<string>().ShouldBe("execute");
        decision["policy_rule_uri"]!.GetValue<string>().ShouldBe("batch:1.0-test");
        decision["context_key"]!.GetValue<string>().ShouldBe($"job:{id}");
        decision["bundle_sha256"]!.GetValue<string>().ShouldBe(policyCode["bundle://sha256/".Length..], "the bundle the pod ran");
        decision["input_sha256"]!.GetValue<string>().Length.ShouldBe(64);
        decision["outcome"]!.GetValue<string>().ShouldBe("result");
        decision["status"]!.GetValue<int>().ShouldBe(200);

        // The runner posting again (a retry after a lost answer) is not a second run.
        using var http = new HttpClient();
        (await http.Post($"{nodeUrl.TrimEnd('/')}/jobs/{id}/result", """{"status":"succeeded","result":{}}""", bearer: token)).Status.ShouldBe(200);
        (await NodeDecisionsAsync(id)).Count.ShouldBe(1);
    }

    private async Task<IReadOnlyList<JsonObject>> NodeDecisionsAsync(string jobId)
    {
        await node.Services.GetRequiredService<PolicyGrid.Runtime.Execution.DecisionLog>().FlushAsync(TestContext.Current.CancellationToken);
        var filter = PolicyGrid.Core.Querying.FilterParser.Parse(new JsonObject { ["caller"] = $"job:{jobId}" });
        return [.. (await NodeStore.QueryAsync(Collections.Decisions, new DocumentQuery(filter, []))).Select(d => d.Body)];
    }

    [Fact]
    public async Task A_runner_with_the_wrong_token_is_refused_and_records_nothing()
    {
        var (id, _) = await PendingOnNodeAsync();
        var exit = await RunRunnerAsync(id, "not-the-token", new JsonObject { ["mode"] = "echo" });

        exit.ShouldBe(1);
        Job.FromJson((await NodeStore.GetAsync(Collections.Jobs, id))!.Body).Status.ShouldBe("pending");
    }

    private async Task<(string Id, string Token)> PendingOnNodeAsync()
    {
        var id = Guid.NewGuid().ToString();
        var job = Job.FromJson(new JsonObject { ["job_id"] = id, ["executor_id"] = "local", ["policy_rule_uri"] = "batch:1.0-test", ["status"] = "pending" });
        await NodeStore.CreateAsync(Collections.Jobs, id, job.ToJson());
        return (id, await node.Services.GetRequiredService<JobResultTokens>().IssueAsync(id, CancellationToken.None));
    }

    // What the Kubernetes Job's pod runs: the runner entrypoint with the env the manifest sets.
    private async Task<int> RunRunnerAsync(string id, string token, JsonObject inputs)
    {
        var policy = (await NodeStore.GetAsync(Collections.Policies, "batch:1.0-test"))!.Body;
        policy["code"] = $"{nodeUrl.TrimEnd('/')}/bundles/sha256/{policyCode["bundle://sha256/".Length..]}";
        var spec = new JsonObject { ["job_id"] = id, ["policy"] = policy.DeepClone(), ["parameters"] = new JsonObject(), ["inputs"] = inputs, ["timeout_seconds"] = 60 };
        var command = new PolicyGrid.Embedded.Jobs.LocalJobOptions().ResolveRunner();
        var start = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in command.Skip(1)) start.ArgumentList.Add(arg);
        start.ArgumentList.Add("job-run");
        start.Environment["POLICYGRID_JOB_ID"] = id;
        start.Environment["POLICYGRID_JOB_SPEC"] = spec.ToJsonString();
        start.Environment["POLICYGRID_RESULT_URL"] = $"{nodeUrl.TrimEnd('/')}/jobs/{id}/result";
        start.Environment["POLICYGRID_JOB_TOKEN"] = token;
        start.Environment["POLICYGRID_DATA"] = Path.Combine(nodeData, "pod-" + id[..8]);
        start.Environment["PolicyGrid__Runtime__Bundles__AllowLoopback"] = "true";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        _ = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(90), TestContext.Current.CancellationToken);
        TestContext.Current.TestOutputHelper?.WriteLine(await stderr);
        return process.ExitCode;
    }
}
