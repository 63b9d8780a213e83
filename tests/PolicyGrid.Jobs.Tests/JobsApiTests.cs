using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Api.Jobs;
using PolicyGrid.Core.Ports;
using Shouldly;

namespace PolicyGrid.Jobs.Tests;

/// <summary>The Jobs API's answers to bad requests, reads, queries, cancel and the runner's result callback.</summary>
public sealed class JobsApiTests : IAsyncLifetime
{
    private const string Echo = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                return {"echo": input_data}
        """;

    private readonly GridServer server = new() { PythonWorkers = 1 };
    private HttpClient client = null!;
    private string policy = "";

    public async ValueTask InitializeAsync()
    {
        client = server.CreateClient();
        policy = await server.StorePolicyAsync("echo", Echo, new JsonObject
        {
            ["policy_input_schema"] = new JsonObject { ["ip"] = new JsonObject { ["type"] = "string", ["required"] = true } },
        });
    }

    public async ValueTask DisposeAsync() => await server.DisposeAsync();

    private async Task<int> JobCount() => (await server.Store.QueryAsync(Collections.Jobs, DocumentQuery.All())).Count;

    [Fact]
    public async Task Submitting_to_an_unknown_executor_is_a_404_and_records_nothing()
    {
        var answer = await client.Post("/jobs/submit/nowhere", $$$"""{"name":"n","policy_rule_uri":"{{{policy}}}","inputs":{"ip":"1.2.3.4"}}""");
        answer.Status.ShouldBe(404);
        answer.Code.ShouldBe("not_found");
        answer.Message!.ShouldContain("nowhere");
        (await JobCount()).ShouldBe(0);
    }

    [Fact]
    public async Task Submitting_an_unknown_policy_is_a_404()
    {
        var answer = await client.Post("/jobs/submit/local", """{"name":"n","policy_rule_uri":"ghost:1.0-x","inputs":{}}""");
        answer.Status.ShouldBe(404);
        answer.Message!.ShouldContain("ghost:1.0-x");
        (await JobCount()).ShouldBe(0);
    }

    [Theory]
    [InlineData("""{"name":"n","inputs":{}}""", "policy_rule_uri")]
    [InlineData("""{"policy_rule_uri":"bad uri","inputs":{}}""", "policy_rule_uri")]
    [InlineData("""{"policy_rule_uri":"echo:1.0-test","inputs":{"ip":"1.2.3.4"},"timeout_seconds":-1}""", "timeout_seconds")]
    [InlineData("""{"policy_rule_uri":"echo:1.0-test","inputs":{"ip":"1.2.3.4"},"timeout_seconds":"soon"}""", "timeout_seconds")]
    [InlineData("""{"policy_rule_uri":"echo:1.0-test","inputs":{"ip":"1.2.3.4"},"timeout_seconds":999999999}""", "timeout_seconds")]
    [InlineData("""{"policy_rule_uri":"echo:1.0-test","inputs":{}}""", "inputs.ip")]
    [InlineData("""{"policy_rule_uri":"echo:1.0-test","inputs":{"ip":5}}""", "inputs.ip")]
    [InlineData("""{"policy_rule_uri":"echo:1.0-test","inputs":{"ip":"1.2.3.4"},"node_selector":{"pool":3}}""", "node_selector.pool")]
    [InlineData("""{"policy_rule_uri":"echo:1.0-test","inputs":{"ip":"1.2.3.4"},"policy_rule_parameters":[1]}""", "policy_rule_parameters")]
    public async Task A_bad_submission_is_a_400_naming_the_field_and_records_nothing(string body, string field)
    {
        var answer = await client.Post("/jobs/submit/local", body);
        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("validation_failed");
        answer.Message!.ShouldContain(field);
        (await JobCount()).ShouldBe(0);
    }

    [Theory]
    [InlineData("\"10.0.0.1\"", "a string")]
    [InlineData("[1]", "an array")]
    public async Task Inputs_that_are_not_an_object_are_said_so_once(string inputs, string kind)
    {
        var answer = await client.Post("/jobs/submit/local", $$"""{"policy_rule_uri":"echo:1.0-test","inputs":{{inputs}}}""");
        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("validation_failed");
        answer.Message.ShouldBe($"inputs: must be an object (it is the policy's input_data), not {kind}");
        (await JobCount()).ShouldBe(0);
    }

    [Theory]
    [InlineData("1e-9", "at least 0.0000001 seconds")]
    [InlineData("1e300", "at most 86400 seconds on this server, not 1E+300")]
    [InlineData("1e20", "at most 86400 seconds")]
    [InlineData("0", "greater than 0")]
    public async Task A_timeout_no_job_could_run_with_is_a_400_at_submit_saying_the_allowed_range(string timeout, string message)
    {
        var answer = await client.Post("/jobs/submit/local", $$"""{"policy_rule_uri":"echo:1.0-test","inputs":{"ip":"1.2.3.4"},"timeout_seconds":{{timeout}}}""");
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("validation_failed");
        answer.Message!.ShouldContain("timeout_seconds: must be " + message);
        (await JobCount()).ShouldBe(0);
    }

    [Theory]
    [InlineData("[1,2]")]
    [InlineData("not json")]
    [InlineData("")]
    public async Task A_submission_that_is_not_a_json_object_is_a_400(string body)
    {
        var answer = await client.Post("/jobs/submit/local", body);
        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("bad_request");
    }

    [Fact]
    public async Task A_retired_policy_cannot_run_as_a_job()
    {
        var retired = await server.StorePolicyAsync("old", Echo, new JsonObject { ["status"] = "retired" });
        var answer = await client.Post("/jobs/submit/local", $$$"""{"policy_rule_uri":"{{{retired}}}","inputs":{}}""");
        answer.Status.ShouldBe(410);
        answer.Code.ShouldBe("retired");
    }

    [Fact]
    public async Task A_job_of_a_deprecated_policy_runs_and_its_submit_answers_a_Deprecation_header()
    {
        var deprecated = await server.StorePolicyAsync("dated", Echo, new JsonObject { ["status"] = "deprecated" });

        var submitted = await client.Post("/jobs/submit/local", $$$"""{"policy_rule_uri":"{{{deprecated}}}","inputs":{"n":1}}""");
        var active = await client.Post("/jobs/submit", $$$"""{"policy_rule_uri":"{{{policy}}}","inputs":{"ip":"1.2.3.4"}}""");

        submitted.Status.ShouldBe(200, submitted.Message);
        submitted.Header("Deprecation").ShouldBe("true", "a deprecated policy's job was answered as if its policy were active");
        active.Status.ShouldBe(200, active.Message);
        active.Header("Deprecation").ShouldBeNull();
        foreach (var job in new[] { submitted, active })
            (await client.Get($"/jobs/{job.Data!["job_id"]!.GetValue<string>()}?wait=60")).DataStatus.ShouldBe("succeeded");
    }

    [Fact]
    public async Task A_policy_timeout_estimate_under_one_clock_tick_counts_as_none_and_the_job_runs()
    {
        var hasty = await server.StorePolicyAsync("hasty", Echo, new JsonObject
        {
            ["resource_estimates"] = new JsonObject { ["timeout_seconds"] = 1e-9 },
        });

        var submitted = await client.Post("/jobs/submit/local", $$$"""{"policy_rule_uri":"{{{hasty}}}","inputs":{"n":1}}""");

        submitted.Status.ShouldBe(200, submitted.Message);
        submitted.Data!["timeout_seconds"]!.GetValue<double>().ShouldBe(new JobsOptions().DefaultTimeoutSeconds);
        var done = (await client.Get($"/jobs/{submitted.Data!["job_id"]!.GetValue<string>()}?wait=60")).Data!;
        done["status"]!.GetValue<string>().ShouldBe("succeeded", done["error"]?.GetValue<string>());
    }

    [Fact]
    public async Task Reading_an_unknown_job_is_a_404_and_a_bad_wait_is_a_400()
    {
        (await client.Get("/jobs/nope")).Status.ShouldBe(404);
        await InsertPendingAsync("j-wait");
        var bad = await client.Get("/jobs/j-wait?wait=soon");
        bad.Status.ShouldBe(400);
        bad.Message!.ShouldContain("wait");
        (await client.Get("/jobs/j-wait?wait=-3")).Status.ShouldBe(400);
    }

    [Fact]
    public async Task A_long_poll_on_a_job_that_does_not_end_answers_it_as_it_is_when_the_wait_is_over()
    {
        await InsertPendingAsync("j-slow");
        var answer = await client.Get("/jobs/j-slow?wait=0.3");
        answer.Status.ShouldBe(200);
        answer.DataStatus.ShouldBe("pending");
    }

    [Fact]
    public async Task A_long_poll_returns_as_soon_as_the_job_ends()
    {
        await InsertPendingAsync("j-ends");
        var token = await server.Services.GetRequiredService<JobResultTokens>().IssueAsync("j-ends", CancellationToken.None);
        var waiting = client.Get("/jobs/j-ends?wait=60");
        (await client.Post("/jobs/j-ends/result", """{"status":"succeeded","result":{"allowed":true}}""", bearer: token)).Status.ShouldBe(200);

        var answer = await waiting.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
        answer.DataStatus.ShouldBe("succeeded");
        answer.Data!["result"]!["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task The_result_callback_needs_the_jobs_own_token_and_the_first_result_stands()
    {
        await InsertPendingAsync("j-cb");
        await InsertPendingAsync("j-other");
        var tokens = server.Services.GetRequiredService<JobResultTokens>();
        var token = await tokens.IssueAsync("j-cb", CancellationToken.None);
        var otherToken = await tokens.IssueAsync("j-other", CancellationToken.None);

        (await client.Post("/jobs/j-cb/result", """{"status":"succeeded","result":{}}""")).Status.ShouldBe(401);
        (await client.Post("/jobs/j-cb/result", """{"status":"succeeded","result":{}}""", bearer: "forged")).Status.ShouldBe(401);
        (await client.Post("/jobs/j-cb/result", """{"status":"succeeded","result":{}}""", bearer: otherToken)).Status.ShouldBe(401);
        (await client.Post("/jobs/j-cb/result", """{"status":"exploded"}""", bearer: token)).Status.ShouldBe(400);
        (await client.Get("/jobs/j-cb")).DataStatus.ShouldBe("pending");

        var first = await client.Post("/jobs/j-cb/result", """{"status":"failed","error":"boom"}""", bearer: token);
        first.DataStatus.ShouldBe("failed");
        first.Data!["finished_at"]!.GetValue<string>().ShouldNotBeEmpty();
        var second = await client.Post("/jobs/j-cb/result", """{"status":"succeeded","result":{"x":1}}""", bearer: token);
        second.DataStatus.ShouldBe("failed");
        second.Data!["error"]!.GetValue<string>().ShouldBe("boom");
    }

    [Fact]
    public async Task A_runners_result_records_the_jobs_decision_once_and_a_decision_that_is_no_object_is_a_400()
    {
        await InsertPendingAsync("j-audit");
        var token = await server.Services.GetRequiredService<JobResultTokens>().IssueAsync("j-audit", CancellationToken.None);

        var bad = await client.Post("/jobs/j-audit/result", """{"status":"succeeded","decision":"yes"}""", bearer: token);
        bad.Status.ShouldBe(400);
        bad.Message!.ShouldContain("decision");
        (await client.Get("/jobs/j-audit")).DataStatus.ShouldBe("pending");

        // A runner that sends no decision of its own (an older runner image) still leaves one, made from the job.
        (await client.Post("/jobs/j-audit/result", """{"status":"failed","error":"boom"}""", bearer: token)).Status.ShouldBe(200);
        (await client.Post("/jobs/j-audit/result", """{"status":"failed","error":"boom"}""", bearer: token)).Status.ShouldBe(200);

        var log = await client.Post("/decisions/query", """{"caller":"job:j-audit"}""");
        log.Status.ShouldBe(200);
        var decision = log.Data!.AsArray().ShouldHaveSingleItem()!;
        decision["policy_rule_uri"]!.GetValue<string>().ShouldBe(policy);
        decision["context_key"]!.GetValue<string>().ShouldBe("job:j-audit");
        decision["outcome"]!.GetValue<string>().ShouldBe("error");
        decision["status"]!.GetValue<int>().ShouldBe(500);
    }

    [Fact]
    public async Task Cancelling_a_pending_job_records_it_cancelled_and_cancelling_again_changes_nothing()
    {
        await InsertPendingAsync("j-cancel");
        var answer = await client.Delete("/jobs/j-cancel");
        answer.Status.ShouldBe(200);
        answer.DataStatus.ShouldBe("cancelled");
        var finishedAt = answer.Data!["finished_at"]!.GetValue<string>();
        finishedAt.ShouldNotBeEmpty();

        var again = await client.Delete("/jobs/j-cancel");
        again.DataStatus.ShouldBe("cancelled");
        again.Data!["finished_at"]!.GetValue<string>().ShouldBe(finishedAt);
        (await client.Delete("/jobs/unknown")).Status.ShouldBe(404);
    }

    [Fact]
    public async Task A_cancel_is_the_jobs_decision_record_once_saying_who_cancelled_it()
    {
        await InsertPendingAsync("j-cancel-audit");
        (await client.Delete("/jobs/j-cancel-audit")).DataStatus.ShouldBe("cancelled");
        (await client.Delete("/jobs/j-cancel-audit")).DataStatus.ShouldBe("cancelled");

        var log = await client.Post("/decisions/query", """{"context_key":"job:j-cancel-audit"}""");
        log.Status.ShouldBe(200);
        var decision = log.Data!.AsArray().ShouldHaveSingleItem()!;
        decision["kind"]!.GetValue<string>().ShouldBe("execute");
        decision["policy_rule_uri"]!.GetValue<string>().ShouldBe(policy);
        decision["caller"]!.GetValue<string>().ShouldBe("anonymous");
        decision["outcome"]!.GetValue<string>().ShouldBe("error");
        decision["error_code"]!.GetValue<string>().ShouldBe("cancelled");
        decision["status"]!.GetValue<int>().ShouldBe(499);
        decision["input_sha256"]!.GetValue<string>().Length.ShouldBe(64);
    }

    [Fact]
    public async Task A_memory_estimate_no_job_pod_could_start_with_is_refused_where_written_and_nothing_is_stored()
    {
        // 512 was handed to Kubernetes as 512 bytes: every job of the policy had a pod that could never start.
        var body = new JsonObject
        {
            ["name"] = "sized", ["version"] = "1.0", ["release_tag"] = "test", ["code"] = await server.StoreBundleAsync(),
            ["type"] = "python_class_v1", ["resource_estimates"] = new JsonObject { ["memory"] = 512 },
        };

        var refused = await client.Post("/policy", body.ToJsonString());

        refused.Status.ShouldBe(400, refused.Body?.ToJsonString());
        refused.Code.ShouldBe("validation_failed");
        refused.Message.ShouldContain("resource_estimates.memory");
        refused.Message.ShouldContain("\"512Mi\"");
        (await client.Get("/policy/sized:1.0-test")).Status.ShouldBe(404);

        body["resource_estimates"] = new JsonObject { ["memory"] = "512Mi", ["cpu"] = "500m" };
        (await client.Post("/policy", body.ToJsonString())).Status.ShouldBe(200);
        var update = await client.Put("/policy/sized:1.0-test", """{"$set": {"resource_estimates.cpu": "fast"}}""");
        update.Status.ShouldBe(400);
        update.Message.ShouldContain("resource_estimates.cpu");
        (await client.Get("/policy/sized:1.0-test")).Data!["resource_estimates"]!["cpu"]!.GetValue<string>().ShouldBe("500m");
    }

    [Fact]
    public async Task Jobs_are_queried_with_a_filter_and_a_window()
    {
        await InsertPendingAsync("q1", "alpha");
        await InsertPendingAsync("q2", "beta");
        await InsertPendingAsync("q3", "alpha");

        var found = await client.Post("/jobs/query?sort=job_id:desc", """{"name":"alpha"}""");
        found.Status.ShouldBe(200);
        found.Data!.AsArray().Select(j => j!["job_id"]!.GetValue<string>()).ShouldBe(["q3", "q1"]);
        var limited = await client.Post("/jobs/query?limit=1&sort=job_id:asc", "{}");
        limited.Data!.AsArray().Count.ShouldBe(1);
        (await client.Post("/jobs/query", """{"status":{"$bogus":1}}""")).Status.ShouldBe(400);
        (await client.Post("/jobs/query?limit=0", "{}")).Status.ShouldBe(400);
    }

    [Fact]
    public async Task Secret_parameters_are_masked_in_every_read()
    {
        var secretive = await server.StorePolicyAsync("secretive", Echo, new JsonObject
        {
            ["policy_parameters_schema"] = new JsonObject { ["api_key"] = new JsonObject { ["type"] = "string", ["secret"] = true } },
        });
        var doc = new JsonObject
        {
            ["job_id"] = "j-secret", ["executor_id"] = "local", ["policy_rule_uri"] = secretive,
            ["policy_rule_parameters"] = new JsonObject { ["api_key"] = "hunter2" }, ["status"] = "pending",
        };
        await server.Store.CreateAsync(Collections.Jobs, "j-secret", PolicyGrid.Core.Documents.Job.FromJson(doc).ToJson());

        (await client.Get("/jobs/j-secret")).Data!["policy_rule_parameters"]!["api_key"]!.GetValue<string>().ShouldBe("***");
        (await client.Post("/jobs/query", """{"job_id":"j-secret"}""")).Data![0]!["policy_rule_parameters"]!["api_key"]!.GetValue<string>().ShouldBe("***");
        // Nor can a query read it back: it filters what a read shows.
        (await client.Post("/jobs/query", """{"job_id":"j-secret", "policy_rule_parameters.api_key": {"$regex": "^hun"}}""")).Data!.AsArray().ShouldBeEmpty();
        (await client.Post("/jobs/query", """{"job_id":"j-secret", "policy_rule_parameters.api_key": "hunter2"}""")).Data!.AsArray().ShouldBeEmpty();
        (await client.Post("/jobs/query", """{"job_id":"j-secret", "policy_rule_parameters.api_key": "***"}""")).Data!.AsArray().Count.ShouldBe(1);
    }

    private async Task InsertPendingAsync(string id, string name = "")
    {
        var doc = new JsonObject { ["job_id"] = id, ["executor_id"] = "local", ["name"] = name, ["policy_rule_uri"] = policy, ["status"] = "pending" };
        await server.Store.CreateAsync(Collections.Jobs, id, PolicyGrid.Core.Documents.Job.FromJson(doc).ToJson());
    }
}
