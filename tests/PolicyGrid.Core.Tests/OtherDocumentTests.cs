using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Documents;

namespace PolicyGrid.Core.Tests;

public class PolicyExecutorTests
{
    [Fact]
    public void A_minimal_executor_is_healthy_with_every_field()
    {
        var json = PolicyExecutor.FromJson(J.O("""{"executor_id": "local", "executor_host_uri": "inproc://local"}""")).ToJson();
        json.ToJsonString().ShouldBe("""{"executor_id":"local","executor_host_uri":"inproc://local","executor_metadata":{},"executor_hardware_info":{},"executor_status":"healthy"}""");
    }

    [Theory]
    [InlineData("inproc://local", "inproc")]
    [InlineData("http://10.0.0.5:8080", "http")]
    [InlineData("https://exec.example.com", "https")]
    [InlineData("dapr://policy-executor", "dapr")]
    [InlineData("http://gateway.example.com/executor/", "http")]
    [InlineData("http://[::1]:8080", "http")]
    public void Accepts_each_executor_kind(string uri, string scheme) =>
        PolicyExecutor.FromJson(new JsonObject { ["executor_id"] = "e", ["executor_host_uri"] = uri }).Scheme.ShouldBe(scheme);

    [Theory]
    [InlineData("""{}""", "executor_host_uri", "is required")]
    [InlineData("""{"executor_host_uri": "ftp://x"}""", "executor_host_uri", "scheme 'ftp' is not one of")]
    [InlineData("""{"executor_host_uri": "localhost:8080"}""", "executor_host_uri", "not an absolute URI")]
    [InlineData("""{"executor_host_uri": "not a uri"}""", "executor_host_uri", "not an absolute URI")]
    [InlineData("""{"executor_host_uri": "dapr://a/b"}""", "executor_host_uri", "must be dapr://<app-id> and nothing more")]
    [InlineData("""{"executor_host_uri": "dapr://app:3500"}""", "executor_host_uri", "must be dapr://<app-id> and nothing more")]
    [InlineData("""{"executor_host_uri": "inproc://local/x?y"}""", "executor_host_uri", "must be inproc://local and nothing more")]
    [InlineData("""{"executor_host_uri": "http://node:8080/x?y=1"}""", "executor_host_uri", "has a query or fragment")]
    [InlineData("""{"executor_host_uri": "http://node:8080/?"}""", "executor_host_uri", "has a query or fragment")]
    [InlineData("""{"executor_host_uri": "https://node#frag"}""", "executor_host_uri", "has a query or fragment")]
    [InlineData("""{"executor_host_uri": "http://ops:hunter2@node:8080"}""", "executor_host_uri", "must not hold a user name or password")]
    [InlineData("""{"executor_host_uri": " http://node:8080"}""", "executor_host_uri", "starts or ends with whitespace")]
    [InlineData("""{"executor_host_uri": "http://node:8080\n"}""", "executor_host_uri", "starts or ends with whitespace")]
    [InlineData("""{"executor_host_uri": "inproc://local", "executor_status": "sleeping"}""", "executor_status", "is not one of")]
    [InlineData("""{"executor_host_uri": "inproc://local", "executor_metadata": "x"}""", "executor_metadata", "must be an object")]
    [InlineData("""{"executor_host_uri": "inproc://local", "executor_metadata": {"labels": ["gpu"]}}""", "executor_metadata.labels", "must be an object")]
    [InlineData("""{"executor_host_uri": "inproc://local", "executor_hardware_info": 4}""", "executor_hardware_info", "must be an object")]
    public void Bad_fields_are_named(string extra, string path, string message)
    {
        var body = J.O(extra);
        body["executor_id"] = "e1";
        var error = J.Rejects(() => PolicyExecutor.FromJson(body)).Errors.ShouldHaveSingleItem();
        error.Path.ShouldBe(path);
        error.Message.ShouldContain(message);
    }

    [Theory]
    [InlineData("1e30")]
    [InlineData("1e-30")]
    [InlineData("4")]
    public void Hardware_numbers_of_any_size_are_numbers(string count)
    {
        var executor = PolicyExecutor.FromJson(J.O($$$"""{"executor_id": "e1", "executor_host_uri": "inproc://local", "executor_hardware_info": {"vcpus": {"count": {{{count}}}}, "memory": {{{count}}}}}"""));
        executor.VcpuCount.ShouldBe(double.Parse(count, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Theory]
    [InlineData("""{"executor_host_uri": "inproc://local"}""", "is required")]
    [InlineData("""{"executor_id": "a b", "executor_host_uri": "inproc://local"}""", "whitespace")]
    [InlineData("""{"executor_id": "a/b", "executor_host_uri": "inproc://local"}""", "'/'")]
    [InlineData("""{"executor_id": "query", "executor_host_uri": "http://node:8080"}""", "POST /executor/query")]
    public void The_id_must_be_usable_in_a_path(string body, string message) =>
        J.Rejects(() => PolicyExecutor.FromJson(J.O(body))).Errors.ShouldHaveSingleItem().Message.ShouldContain(message);

    [Fact]
    public void A_password_in_the_host_uri_is_refused_without_being_repeated()
    {
        var error = J.Rejects(() => PolicyExecutor.FromJson(J.O("""{"executor_id": "e1", "executor_host_uri": "https://ops:hunter2@node"}"""))).Errors.ShouldHaveSingleItem();
        error.Message.ShouldNotContain("hunter2");
        error.Message.ShouldContain("RemoteExecutors:Token");
    }

    [Fact]
    public void A_stored_executor_with_a_query_in_its_address_still_reads()
    {
        // Refused where it is written; one stored by an older server still reads (and is answered as it was).
        PolicyExecutor.FromStored(J.O("""{"executor_id": "e1", "executor_host_uri": "http://node:8080/x?y=1"}""")).ExecutorHostUri.ShouldBe("http://node:8080/x?y=1");
    }

    [Fact]
    public void Draining_is_a_status() =>
        PolicyExecutor.FromJson(J.O("""{"executor_id": "e", "executor_host_uri": "inproc://local", "executor_status": "draining"}""")).ExecutorStatus.ShouldBe("draining");
}

public class FunctionDeploymentTests
{
    private static JsonObject Body(string extra = "{}")
    {
        var body = J.O("""{"function_id": "scorer", "function_policy_rule_uri": "ip_allowlist:1.0-beta"}""");
        foreach (var (k, v) in J.O(extra)) body[k] = v?.DeepClone();
        return body;
    }

    [Fact]
    public void A_minimal_function_gets_every_field_and_complete_autoscaling()
    {
        var json = FunctionDeployment.FromJson(Body()).ToJson();
        json.Select(p => p.Key).ShouldBe([
            "function_id", "function_executor_id", "function_executor_uri", "function_metadata", "function_tags",
            "function_policy_rule_uri", "function_policy_data", "replicas", "autoscaling", "status", "created_at", "updated_at"]);
        json["replicas"]!.GetValue<int>().ShouldBe(1);
        json["autoscaling"]!.ToJsonString().ShouldBe("""{"enabled":false,"min_replicas":1,"max_replicas":1,"target_cpu_utilization_percentage":80}""");
        json["function_tags"]!.ToJsonString().ShouldBe("[]");
        json["status"]!.GetValue<string>().ShouldBe("pending");
    }

    [Fact]
    public void Given_values_are_kept()
    {
        var f = FunctionDeployment.FromJson(Body("""
            {"replicas": 3, "function_tags": ["a"], "function_executor_id": "local", "status": "running",
             "autoscaling": {"enabled": true, "min_replicas": 2, "max_replicas": 5, "target_cpu_utilization_percentage": 60},
             "function_policy_data": {"name": "ip_allowlist"}}
            """));
        f.Replicas.ShouldBe(3);
        f.FunctionTags.ShouldBe(["a"]);
        f.Autoscaling["max_replicas"]!.GetValue<long>().ShouldBe(5);
        f.PolicyUri.Name.ShouldBe("ip_allowlist");
        FunctionDeployment.FromJson(f.ToJson()).ToJson().ToJsonString().ShouldBe(f.ToJson().ToJsonString());
    }

    [Theory]
    [InlineData("""{"function_policy_rule_uri": "nope"}""", "function_policy_rule_uri", "has no ':'")]
    [InlineData("""{"replicas": 0}""", "replicas", "must be at least 1")]
    [InlineData("""{"replicas": 1.5}""", "replicas", "must be an integer")]
    [InlineData("""{"replicas": 1e-30}""", "replicas", "must be an integer")]
    [InlineData("""{"replicas": "2"}""", "replicas", "must be an integer")]
    [InlineData("""{"function_tags": "a,b"}""", "function_tags", "must be an array of strings")]
    [InlineData("""{"function_metadata": []}""", "function_metadata", "must be an object")]
    [InlineData("""{"autoscaling": {"enabled": "yes"}}""", "autoscaling.enabled", "true or false")]
    [InlineData("""{"autoscaling": {"min_replicas": 4, "max_replicas": 2}}""", "autoscaling.min_replicas", "greater than max_replicas 2")]
    [InlineData("""{"autoscaling": {"target_cpu_utilization_percentage": 150}}""", "autoscaling.target_cpu_utilization_percentage", "at most 100")]
    [InlineData("""{"autoscaling": 1}""", "autoscaling", "must be an object")]
    public void Bad_fields_are_named(string extra, string path, string message)
    {
        var error = J.Rejects(() => FunctionDeployment.FromJson(Body(extra))).Errors.ShouldHaveSingleItem();
        error.Path.ShouldBe(path);
        error.Message.ShouldContain(message);
    }

    [Fact]
    public void Id_and_policy_are_required() =>
        J.Rejects(() => FunctionDeployment.FromJson(J.O("{}"))).Paths().ShouldBe(["function_id", "function_policy_rule_uri"], ignoreOrder: true);

    [Fact]
    public void Redacted_json_hides_secrets_in_the_snapshot()
    {
        var f = FunctionDeployment.FromJson(Body("""{"function_policy_data": {"policy_settings_schema": {"t": {"secret": true}}, "policy_settings": {"t": "x"}}}"""));
        f.ToRedactedJson()["function_policy_data"]!["policy_settings"]!["t"]!.GetValue<string>().ShouldBe("***");
    }

    [Fact]
    public void Timestamps_keep_the_creation_time()
    {
        var t0 = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var created = FunctionDeployment.FromJson(Body()).WithTimestamps(null, t0);
        var updated = FunctionDeployment.FromJson(Body()).WithTimestamps(created, t0.AddHours(1));
        updated.CreatedAt.ShouldBe("2026-01-01T00:00:00.000Z");
        updated.UpdatedAt.ShouldBe("2026-01-01T01:00:00.000Z");
    }
}

public class JobTests
{
    [Fact]
    public void A_minimal_job_is_pending_with_every_field()
    {
        var json = Job.FromJson(J.O("""{"job_id": "7f9c", "policy_rule_uri": "ip_allowlist:1.0-beta"}""")).ToJson();
        json.ToJsonString().ShouldBe(
            """{"job_id":"7f9c","executor_id":"","name":"","policy_rule_uri":"ip_allowlist:1.0-beta","policy_rule_parameters":{},"node_selector":{},"inputs":{},"timeout_seconds":3600,"status":"pending","result":{},"error":"","created_at":"","started_at":"","finished_at":""}""");
    }

    [Fact]
    public void Inputs_and_results_may_be_any_json()
    {
        var job = Job.FromJson(J.O("""{"job_id": "j", "policy_rule_uri": "a:1-b", "inputs": [1, 2], "result": {"allowed": true}, "status": "succeeded", "timeout_seconds": 2.5}"""));
        job.Inputs.ToJsonString().ShouldBe("[1,2]");
        job.IsFinished.ShouldBeTrue();
        job.TimeoutSeconds.ShouldBe(2.5);
    }

    [Theory]
    [InlineData("""{"policy_rule_uri": "x"}""", "policy_rule_uri", "has no ':'")]
    [InlineData("""{"status": "done"}""", "status", "is not one of")]
    [InlineData("""{"timeout_seconds": 0}""", "timeout_seconds", "must be greater than 0")]
    [InlineData("""{"timeout_seconds": "60"}""", "timeout_seconds", "must be a number")]
    [InlineData("""{"node_selector": {"gpu": true}}""", "node_selector.gpu", "must be a string label value")]
    [InlineData("""{"node_selector": ["gpu"]}""", "node_selector", "must be an object")]
    [InlineData("""{"policy_rule_parameters": 1}""", "policy_rule_parameters", "must be an object")]
    [InlineData("""{"started_at": "soon"}""", "started_at", "ISO-8601")]
    [InlineData("""{"error": {}}""", "error", "must be a string")]
    public void Bad_fields_are_named(string extra, string path, string message)
    {
        var body = J.O("""{"job_id": "j", "policy_rule_uri": "a:1-b"}""");
        foreach (var (k, v) in J.O(extra)) body[k] = v?.DeepClone();
        var error = J.Rejects(() => Job.FromJson(body)).Errors.ShouldHaveSingleItem();
        error.Path.ShouldBe(path);
        error.Message.ShouldContain(message);
    }

    [Fact]
    public void Documents_built_in_code_with_typed_values_are_read_as_json_would_be()
    {
        var id = Guid.NewGuid();
        var job = Job.FromJson(new JsonObject
        {
            ["job_id"] = JsonValue.Create(id),
            ["policy_rule_uri"] = "a:1-b",
            ["created_at"] = JsonValue.Create(new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero)),
            ["timeout_seconds"] = 30,
        });
        job.JobId.ShouldBe(id.ToString());
        job.CreatedAt.ShouldStartWith("2026-01-02T03:04:05");
        job.TimeoutSeconds.ShouldBe(30);
    }

    [Fact]
    public void A_job_moves_from_pending_to_running_to_its_end()
    {
        var t0 = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var job = Job.FromJson(J.O("""{"job_id": "j", "policy_rule_uri": "a:1-b"}""")).Submitted(t0);
        job.CreatedAt.ShouldBe("2026-01-01T00:00:00.000Z");
        var running = job.Started(t0.AddSeconds(1));
        running.Status.ShouldBe("running");
        running.StartedAt.ShouldBe("2026-01-01T00:00:01.000Z");
        var done = running.Finished(JobStatus.Succeeded, J.O("""{"allowed": true}"""), "", t0.AddSeconds(3));
        done.Status.ShouldBe("succeeded");
        done.Result.ToJsonString().ShouldBe("""{"allowed":true}""");
        done.FinishedAt.ShouldBe("2026-01-01T00:00:03.000Z");
        Job.FromJson(done.ToJson()).ToJson().ToJsonString().ShouldBe(done.ToJson().ToJsonString());
    }

    [Fact]
    public void The_first_final_status_sticks()
    {
        var t0 = DateTimeOffset.UnixEpoch;
        var cancelled = Job.FromJson(J.O("""{"job_id": "j", "policy_rule_uri": "a:1-b"}""")).Finished(JobStatus.Cancelled, null, "cancelled by caller", t0);
        cancelled.StartedAt.ShouldNotBeEmpty();
        cancelled.Finished(JobStatus.Succeeded, J.O("{}"), "", t0.AddSeconds(1)).ShouldBeSameAs(cancelled);
        cancelled.Started(t0.AddSeconds(2)).ShouldBeSameAs(cancelled);
        cancelled.Error.ShouldBe("cancelled by caller");
        Should.Throw<ArgumentException>(() => cancelled.Finished("running", null, "", t0));
    }

    [Theory]
    [InlineData("pending", false)]
    [InlineData("running", false)]
    [InlineData("succeeded", true)]
    [InlineData("failed", true)]
    [InlineData("timed_out", true)]
    [InlineData("cancelled", true)]
    public void Final_statuses_are_known(string status, bool final) => JobStatus.IsFinal(status).ShouldBe(final);
}

public class GraphDocumentTests
{
    private static JsonObject Body(string extra = "{}")
    {
        var body = J.O("""
            {"graph_name": "screen", "graph_version": "1.0", "graph_release_tag": "beta",
             "graph_function_ids": ["a", "b", "c"], "graph_connection_data": {"a": ["b", "c"], "b": ["c"]}}
            """);
        foreach (var (k, v) in J.O(extra)) body[k] = v?.DeepClone();
        return body;
    }

    [Fact]
    public void A_graph_gets_its_uri_and_every_field()
    {
        var json = Graph.FromJson(Body()).ToJson();
        json.Select(p => p.Key).ShouldBe([
            "graph_uri", "graph_name", "graph_version", "graph_release_tag", "graph_metadata", "graph_function_ids",
            "graph_connection_data", "graph_search_tags", "graph_description", "graph_input_schema", "graph_output_schema"]);
        json["graph_uri"]!.GetValue<string>().ShouldBe("screen:1.0-beta");
        json["graph_connection_data"]!.ToJsonString().ShouldBe("""{"a":["b","c"],"b":["c"]}""");
        Graph.FromJson(json).ToJson().ToJsonString().ShouldBe(json.ToJsonString());
    }

    [Fact]
    public void The_plan_is_available_from_the_document()
    {
        var plan = Graph.FromJson(Body()).Plan();
        plan.Sink.ShouldBe("c");
        plan.Parents("c").ShouldBe(["a", "b"]);
    }

    [Theory]
    [InlineData("""{"graph_uri": "screen:2.0-beta"}""", "graph_uri", "disagrees")]
    [InlineData("""{"graph_release_tag": "a-b"}""", "graph_release_tag", "must not contain '-'")]
    [InlineData("""{"graph_function_ids": "a,b"}""", "graph_function_ids", "must be an array of strings")]
    [InlineData("""{"graph_function_ids": ["a", 2, "c"]}""", "graph_function_ids[1]", "must be a string")]
    [InlineData("""{"graph_connection_data": {"a": "b"}}""", "graph_connection_data.a", "must be a list of child function ids")]
    [InlineData("""{"graph_connection_data": {"a": ["b", 3]}}""", "graph_connection_data.a[1]", "must be a function id string")]
    [InlineData("""{"graph_connection_data": {"a": ["b"], "b": ["a", "c"]}}""", "graph_connection_data", "has a cycle: a -> b -> a")]
    [InlineData("""{"graph_connection_data": {"a": ["b"]}}""", "graph_connection_data", "exactly one sink")]
    [InlineData("""{"graph_connection_data": {"a": ["b", "c"], "b": ["c"], "x": ["c"]}}""", "graph_connection_data.x", "'x' is not in graph_function_ids")]
    [InlineData("""{"graph_function_ids": [], "graph_connection_data": {}}""", "graph_function_ids", "at least one")]
    [InlineData("""{"graph_search_tags": [1]}""", "graph_search_tags[0]", "must be a string")]
    [InlineData("""{"graph_input_schema": {"x": {"type": "str"}}}""", "graph_input_schema.x.type", "is not one of")]
    public void A_bad_graph_is_rejected_naming_the_field(string extra, string path, string message)
    {
        var error = J.Rejects(() => Graph.FromJson(Body(extra))).Errors.ShouldHaveSingleItem();
        error.Path.ShouldBe(path);
        error.Message.ShouldContain(message);
    }

    [Fact]
    public void A_document_with_thousands_of_bad_fields_names_the_first_fifty_and_counts_the_rest()
    {
        // 130,000 such items fit in a 1 MiB body, and the answer named each one twice (message and errors): 22 MB.
        var children = string.Join(", ", Enumerable.Range(0, 2000));
        var e = J.Rejects(() => Graph.FromJson(Body($$$"""{"graph_connection_data": {"a": [{{{children}}}]}}""")));

        e.Errors.Count.ShouldBe(Problems.MaxListedErrors);
        e.Errors[0].ToString().ShouldBe("graph_connection_data.a[0]: must be a function id string, not a number");
        e.Errors[^1].Path.ShouldBe("graph_connection_data.a[49]");
        e.Message.ShouldEndWith("graph_connection_data.a[49]: must be a function id string, not a number; and 1950 more errors not listed here");
        e.Message.Length.ShouldBeLessThan(5000);
    }

    [Fact]
    public void Function_ids_are_required() =>
        J.Rejects(() => Graph.FromJson(J.O("""{"graph_name": "g", "graph_version": "1", "graph_release_tag": "t"}"""))).Paths().ShouldBe(["graph_function_ids"]);

    [Fact]
    public void A_single_node_graph_needs_no_connections() =>
        Graph.FromJson(J.O("""{"graph_name": "g", "graph_version": "1", "graph_release_tag": "t", "graph_function_ids": ["only"]}""")).Plan().Sink.ShouldBe("only");
}
