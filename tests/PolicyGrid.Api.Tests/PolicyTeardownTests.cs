using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// A deleted or retired policy gives back its workers and its parsed document on serve, where the registry and the
/// runtime share the process; another version of its name keeps the workers they share while it can still run.
/// </summary>
public sealed class PolicyTeardownTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    private const string PidPolicy = """
        import os
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                return {"pid": os.getpid()}
        """;

    private async Task<string> RegisterAsync(string name, string version, string code)
    {
        var body = new JsonObject
        {
            ["name"] = name, ["version"] = version, ["release_tag"] = "test", ["code"] = code, ["type"] = "python_class_v1",
            ["policy_parameters_schema"] = new JsonObject(), ["policy_parameters"] = new JsonObject(),
        };
        var answer = await client.Post("/policy", body.ToJsonString());
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return $"{name}:{version}-test";
    }

    private async Task<int> PidOf(string uri)
    {
        var answer = await client.Post("/executor/local/execute_policy", Onboarding.Execute(uri, "{}"));
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        return answer.Data!["pid"]!.GetValue<int>();
    }

    private bool Alive(int pid) =>
        server.Service<PythonWorkerPool>().LiveWorkers().Any(w => w.Pid == pid) || Directory.Exists($"/proc/{pid}");

    [Fact]
    public async Task Deleting_and_retiring_the_versions_of_a_policy_stops_its_workers_once_none_can_run_and_a_new_registration_starts_afresh()
    {
        var name = Unique("teardown");
        var code = await server.StoreBundleAsync(PidPolicy);
        var one = await RegisterAsync(name, "1.0", code);
        var two = await RegisterAsync(name, "2.0", code);
        var pid = await PidOf(one);
        (await PidOf(two)).ShouldBe(pid); // one group per policy name
        var catalog = server.Service<PolicyCatalog>();
        var parsed = catalog.ParsedCount;

        (await client.Delete($"/policy/{one}")).Status.ShouldBe(200);

        // 2.0 still runs, in the same workers.
        Alive(pid).ShouldBeTrue();
        (await PidOf(two)).ShouldBe(pid);
        catalog.ParsedCount.ShouldBe(parsed - 1);

        var retired = await client.Put($"/policy/{two}", """{"$set": {"status": "retired"}}""");
        retired.Status.ShouldBe(200, retired.Body?.ToJsonString());

        Alive(pid).ShouldBeFalse();
        catalog.ParsedCount.ShouldBe(parsed - 2);
        (await client.Post("/executor/local/execute_policy", Onboarding.Execute(two, "{}"))).Status.ShouldBe(410);

        // The name registered again runs, in workers of its own.
        var again = await RegisterAsync(name, "1.0", code);
        var newPid = await PidOf(again);
        newPid.ShouldNotBe(pid);
        Alive(newPid).ShouldBeTrue();
    }

    [Fact]
    public async Task Deprecating_a_policy_keeps_its_workers_and_deleting_another_policy_leaves_them_alone()
    {
        var code = await server.StoreBundleAsync(PidPolicy);
        var kept = await RegisterAsync(Unique("kept"), "1.0", code);
        var gone = await RegisterAsync(Unique("gone"), "1.0", code);
        var pid = await PidOf(kept);
        var gonePid = await PidOf(gone);

        (await client.Put($"/policy/{kept}", """{"$set": {"status": "deprecated"}}""")).Status.ShouldBe(200);
        (await client.Delete($"/policy/{gone}")).Status.ShouldBe(200);

        Alive(gonePid).ShouldBeFalse();
        Alive(pid).ShouldBeTrue();
        (await PidOf(kept)).ShouldBe(pid);
    }
}
