using System.Text.Json.Nodes;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>Which executor a job submitted without one lands on.</summary>
public sealed class AllocationTests : IAsyncLifetime
{
    // Executors at an address nothing listens on: the job itself fails fast; only the choice matters here.
    private const string Nowhere = "http://127.0.0.1:9";
    private readonly GridServer server = new() { PythonWorkers = 1 };
    private HttpClient client = null!;
    private string policy = "";

    public async ValueTask InitializeAsync()
    {
        client = server.CreateClient();
        policy = await server.StorePolicyAsync("echo", "class AIOSv1PolicyRule:\n    def __init__(self, r, s, p): pass\n    def eval(self, p, i, c): return {}\n");
    }

    public async ValueTask DisposeAsync() => await server.DisposeAsync();

    private async Task<string> SubmitAsync(string selector, string path = "/jobs/submit")
    {
        var answer = await client.Post(path, $$$"""{"name":"alloc","policy_rule_uri":"{{{policy}}}","node_selector":{{{selector}}},"inputs":{}}""");
        answer.Status.ShouldBe(200, answer.Message);
        answer.DataStatus.ShouldBe("pending");
        return answer.Data!["executor_id"]!.GetValue<string>();
    }

    [Fact]
    public async Task Only_executors_carrying_every_selected_label_are_considered()
    {
        await server.StoreExecutorAsync("gpu-small", Nowhere, new JsonObject { ["pool"] = "gpu", ["zone"] = "a" }, new JsonObject { ["count"] = 2 });
        await server.StoreExecutorAsync("cpu-big", Nowhere, new JsonObject { ["pool"] = "cpu", ["zone"] = "a" }, new JsonObject { ["count"] = 64 });
        await server.StoreExecutorAsync("gpu-other-zone", Nowhere, new JsonObject { ["pool"] = "gpu", ["zone"] = "b" }, new JsonObject { ["count"] = 64 });

        (await SubmitAsync("""{"pool":"gpu","zone":"a"}""")).ShouldBe("gpu-small");
        (await SubmitAsync("""{"pool":"gpu","zone":"a"}""", "/jobs/submit/")).ShouldBe("gpu-small");
    }

    [Fact]
    public async Task The_executor_with_the_most_free_vcpus_wins_and_unhealthy_ones_are_skipped()
    {
        await server.StoreExecutorAsync("four", Nowhere, new JsonObject { ["pool"] = "x" }, new JsonObject { ["count"] = 4 });
        await server.StoreExecutorAsync("eight", Nowhere, new JsonObject { ["pool"] = "x" }, new JsonObject { ["count"] = 8 });
        await server.StoreExecutorAsync("huge-but-sick", Nowhere, new JsonObject { ["pool"] = "x" }, new JsonObject { ["count"] = 128 }, status: "unhealthy");
        await server.StoreExecutorAsync("huge-but-draining", Nowhere, new JsonObject { ["pool"] = "x" }, new JsonObject { ["count"] = 128 }, status: "draining");

        (await SubmitAsync("""{"pool":"x"}""")).ShouldBe("eight");
    }

    [Fact]
    public async Task Reported_free_vcpus_beat_the_total_count()
    {
        await server.StoreExecutorAsync("busy-big", Nowhere, new JsonObject { ["pool"] = "y" }, new JsonObject { ["count"] = 32, ["free"] = 1 });
        await server.StoreExecutorAsync("idle-small", Nowhere, new JsonObject { ["pool"] = "y" }, new JsonObject { ["count"] = 4, ["free"] = 4 });

        (await SubmitAsync("""{"pool":"y"}""")).ShouldBe("idle-small");
    }

    [Fact]
    public async Task Jobs_already_running_on_an_executor_count_against_its_vcpus()
    {
        await server.StoreExecutorAsync("a", Nowhere, new JsonObject { ["pool"] = "z" }, new JsonObject { ["count"] = 4 });
        await server.StoreExecutorAsync("b", Nowhere, new JsonObject { ["pool"] = "z" }, new JsonObject { ["count"] = 4 });
        foreach (var id in new[] { "r1", "r2" })
        {
            var doc = new JsonObject { ["job_id"] = id, ["executor_id"] = "a", ["policy_rule_uri"] = policy, ["status"] = "running" };
            await server.Store.CreateAsync(PolicyGrid.Core.Ports.Collections.Jobs, id, PolicyGrid.Core.Documents.Job.FromJson(doc).ToJson());
        }

        (await SubmitAsync("""{"pool":"z"}""")).ShouldBe("b");
    }

    // Many documents at once, straight into the store (one batch, not one request each).
    private Task StoreManyAsync(string collection, IEnumerable<(string Id, JsonObject Body)> documents) =>
        ((PolicyGrid.Core.Ports.IDocumentBatchStore)server.Store).CreateManyAsync(collection, documents.ToList(), d => d.Id, (w, d) => d.Body.WriteTo(w),
            TestContext.Current.CancellationToken);

    private static JsonObject Executor(string id, int vcpus) => PolicyGrid.Core.Documents.PolicyExecutor.FromJson(new JsonObject
    {
        ["executor_id"] = id, ["executor_host_uri"] = Nowhere,
        ["executor_metadata"] = new JsonObject { ["labels"] = new JsonObject { ["pool"] = "many" } },
        ["executor_hardware_info"] = new JsonObject { ["vcpus"] = new JsonObject { ["count"] = vcpus } },
        ["executor_status"] = "healthy",
    }).ToJson();

    [Fact]
    public async Task An_executor_past_the_first_thousand_registered_is_a_candidate_too()
    {
        await StoreManyAsync(PolicyGrid.Core.Ports.Collections.Executors, Enumerable.Range(0, 1100).Select(i => ($"small-{i:D4}", Executor($"small-{i:D4}", 1))));
        await server.StoreExecutorAsync("zz-big", Nowhere, new JsonObject { ["pool"] = "many" }, new JsonObject { ["count"] = 64 });

        (await SubmitAsync("""{"pool":"many"}""")).ShouldBe("zz-big");
    }

    [Fact]
    public async Task Every_running_job_counts_against_its_executor_even_past_the_first_thousand()
    {
        await server.StoreExecutorAsync("a", Nowhere, new JsonObject { ["pool"] = "busy" }, new JsonObject { ["count"] = 2100 });
        await server.StoreExecutorAsync("b", Nowhere, new JsonObject { ["pool"] = "busy" }, new JsonObject { ["count"] = 1000 });
        // 1200 jobs running on a leave it 900 free, fewer than b's 1000 (counting only 1000 of them would leave it 1100).
        await StoreManyAsync(PolicyGrid.Core.Ports.Collections.Jobs, Enumerable.Range(0, 1200).Select(i => ($"r{i:D4}",
            PolicyGrid.Core.Documents.Job.FromJson(new JsonObject { ["job_id"] = $"r{i:D4}", ["executor_id"] = "a", ["policy_rule_uri"] = policy, ["status"] = "running" }).ToJson())));

        (await SubmitAsync("""{"pool":"busy"}""")).ShouldBe("b");
    }

    [Fact]
    public async Task An_executor_stored_with_unreadable_hardware_info_is_passed_over()
    {
        // A document an older server accepted, put straight into the store: read as it stands, it would win on vCPUs.
        await server.Store.UpsertAsync(PolicyGrid.Core.Ports.Collections.Executors, "old-huge", new JsonObject
        {
            ["executor_id"] = "old-huge", ["executor_host_uri"] = Nowhere,
            ["executor_metadata"] = new JsonObject { ["labels"] = new JsonObject { ["pool"] = "v" } },
            ["executor_hardware_info"] = new JsonObject { ["vcpus"] = new JsonObject { ["count"] = 128, ["free"] = "most" } },
            ["executor_status"] = "healthy",
        }, TestContext.Current.CancellationToken);
        await server.StoreExecutorAsync("small", Nowhere, new JsonObject { ["pool"] = "v" }, new JsonObject { ["count"] = 2 });

        (await SubmitAsync("""{"pool":"v"}""")).ShouldBe("small");
    }

    [Fact]
    public async Task A_submission_naming_a_field_a_job_lacks_is_accepted_and_warns_of_it()
    {
        await server.StoreExecutorAsync("typo-pool", Nowhere, new JsonObject { ["pool"] = "typo" }, new JsonObject { ["count"] = 2 });
        var answer = await client.Post("/jobs/submit/typo-pool", $$$"""{"name":"t","policy_rule_uri":"{{{policy}}}","inputs":{},"timeout_second":5}""");

        answer.Status.ShouldBe(200, answer.Message);
        answer.Body!["warnings"]!.AsArray().Single()!.GetValue<string>()
            .ShouldBe("'timeout_second' is not a field of a job and was not stored; did you mean 'timeout_seconds'?");
    }

    [Fact]
    public async Task When_nothing_matches_the_answer_is_a_503_naming_the_selector()
    {
        await server.StoreExecutorAsync("sick", Nowhere, new JsonObject { ["pool"] = "w" }, new JsonObject { ["count"] = 4 }, status: "unhealthy");
        var answer = await client.Post("/jobs/submit", $$$"""{"policy_rule_uri":"{{{policy}}}","node_selector":{"pool":"w"},"inputs":{}}""");
        answer.Status.ShouldBe(503);
        answer.Code.ShouldBe("backend_unavailable");
        answer.Message!.ShouldContain("pool");
    }
}
