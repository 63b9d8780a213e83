using System.Text.Json.Nodes;
using PolicyGrid.Cli.Commands;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>`policygrid function ...` and `policygrid graph ...` against the real server.</summary>
public sealed class CliVerbTests(GraphServerFixture fixture) : IClassFixture<GraphServerFixture>
{
    private readonly string _run = Guid.NewGuid().ToString("N")[..6];

    private async Task<(int Code, string Out, string Error)> Cli(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(output), output, error, uri =>
        {
            var client = fixture.Server.CreateDefaultClient();
            client.BaseAddress = uri;
            return client;
        });
        var code = await CliApp.RunAsync([.. args, "--server", "http://localhost/"], env);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task An_async_run_is_cancelled_from_the_command_line_one_that_ended_is_said_to_have_and_an_unknown_id_is_an_error()
    {
        var held = $"cli_held_{_run}";
        var never = Path.Combine(Path.GetTempPath(), "pg-never-" + _run); // the node waits for this file, never made
        var deployed = await Cli("function", "deploy", held, "--policy", fixture.Policy, "--executor", "local",
            "--parameters", new JsonObject { ["tag"] = "H", ["hold"] = never }.ToJsonString());
        deployed.Code.ShouldBe(0, deployed.Error);
        var file = Path.Combine(fixture.Server.DataDirectory, $"held-{_run}.json");
        await File.WriteAllTextAsync(file, new JsonObject
        {
            ["graph_name"] = $"cli_held_{_run}", ["graph_version"] = "1.0", ["graph_release_tag"] = "test", ["graph_function_ids"] = new JsonArray(held),
        }.ToJsonString(), TestContext.Current.CancellationToken);
        (await Cli("graph", "create", file)).Code.ShouldBe(0);
        var started = await Cli("graph", "run", $"cli_held_{_run}:1.0-test", "--async", "--json");
        started.Code.ShouldBe(0, started.Error);
        var id = JsonNode.Parse(started.Out)!["execution_id"]!.GetValue<string>();

        var cancelled = await Cli("graph", "cancel", id);
        cancelled.Code.ShouldBe(0, cancelled.Error);
        cancelled.Out.Trim().ShouldBe($"graph execution {id} is cancelled");
        var again = await Cli("graph", "cancel", id, "--json");
        JsonNode.Parse(again.Out)!["status"]!.GetValue<string>().ShouldBe("cancelled");
        // The record is answered unchanged, and what it says still holds.
        (await Cli("graph", "cancel", id)).Out.Trim().ShouldBe($"graph execution {id} is cancelled");
        await File.WriteAllTextAsync(never, "", TestContext.Current.CancellationToken);
        var next = JsonNode.Parse((await Cli("graph", "run", $"cli_held_{_run}:1.0-test", "--async", "--json")).Out)!["execution_id"]!.GetValue<string>();
        (await AsyncGraphRuns.EndedAsync(fixture.Client, next))["status"]!.GetValue<string>().ShouldBe("succeeded");
        (await Cli("graph", "cancel", next)).Out.Trim().ShouldBe($"graph execution {next} had already ended (succeeded): nothing to cancel");
        File.Delete(never);
        var unknown = await Cli("graph", "cancel", "nope");
        unknown.Code.ShouldNotBe(0);
        unknown.Error.ShouldContain("no graph execution 'nope'");
    }

    [Fact]
    public async Task Functions_and_graphs_are_driven_from_the_command_line()
    {
        var a = $"cli_a_{_run}";
        var b = $"cli_b_{_run}";
        foreach (var (name, tag) in new[] { (a, "A"), (b, "B") })
        {
            var deployed = await Cli("function", "deploy", name, "--policy", fixture.Policy, "--executor", "local", "--parameters", $$"""{"tag": "{{tag}}"}""", "--json");
            deployed.Code.ShouldBe(0, deployed.Error);
            JsonNode.Parse(deployed.Out)!["function_id"]!.GetValue<string>().ShouldBe(name);
        }
        var called = await Cli("function", "call", a, """{"x": 1}""", "--json");
        JsonNode.Parse(called.Out)!["by"]!.GetValue<string>().ShouldBe("A");
        var found = await Cli("function", "query", $$"""{"function_id": "{{b}}"}""", "--json");
        JsonNode.Parse(found.Out)!.AsArray().Count.ShouldBe(1);

        var file = Path.Combine(fixture.Server.DataDirectory, $"graph-{_run}.json");
        await File.WriteAllTextAsync(file, new JsonObject
        {
            ["graph_name"] = $"cli_{_run}", ["graph_version"] = "1.0", ["graph_release_tag"] = "test",
            ["graph_function_ids"] = new JsonArray(a, b),
            ["graph_connection_data"] = new JsonObject { [a] = new JsonArray(b) },
        }.ToJsonString(), TestContext.Current.CancellationToken);
        var uri = $"cli_{_run}:1.0-test";
        (await Cli("graph", "create", file)).Code.ShouldBe(0);
        var ran = await Cli("graph", "run", uri, """{"x": 2}""", "--json");
        ran.Code.ShouldBe(0, ran.Error);
        JsonNode.Parse(ran.Out)!["got"]!["by"]!.GetValue<string>().ShouldBe("A");
        (await Cli("graph", "diagram", uri)).Out.ShouldContain("flowchart");
        (await Cli("graph", "get", uri, "--json")).Out.ShouldContain(b);
        (await Cli("graph", "query", "--json")).Out.ShouldContain(uri);
        (await Cli("graph", "delete", uri)).Code.ShouldBe(0);
        (await Cli("graph", "get", uri)).Code.ShouldNotBe(0);

        (await Cli("function", "remove", a)).Code.ShouldBe(0);
        var gone = await Cli("function", "call", a);
        gone.Code.ShouldNotBe(0);
        gone.Error.ShouldContain(a);
    }
}
