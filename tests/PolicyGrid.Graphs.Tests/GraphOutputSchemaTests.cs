using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// A graph's result against its graph_output_schema, per <c>PolicyGrid:Runtime:Execution:OutputSchemaMode</c> as a Type 2
/// answer is checked against its policy_output_schema: it was stored and never checked, whatever the setting.
/// </summary>
public sealed class GraphOutputSchemaTests
{
    private const string Mismatch = "result.by: must be a boolean, not a string";

    /// <summary>A server in <paramref name="mode"/> with one node answering <c>{"by": "shaped", ...}</c> and two one-node graphs over it.</summary>
    private sealed class Shaped : IAsyncDisposable
    {
        public required GridServer Server { get; init; }
        public required HttpClient Client { get; init; }
        public required LogCapture Logs { get; init; }

        /// <summary>Wants <c>by</c> a boolean: the node's string does not fit.</summary>
        public const string Misfit = "misfit:1-t";
        /// <summary>Wants <c>by</c> a string and <c>calls</c> an integer: the node's answer fits.</summary>
        public const string Fit = "fit:1-t";

        public static async Task<Shaped> StartAsync(string mode)
        {
            var logs = new LogCapture();
            var server = new GridServer
            {
                Settings = new() { ["PolicyGrid:Runtime:Execution:OutputSchemaMode"] = mode },
                TestServices = s => s.AddSingleton<ILoggerProvider>(logs),
            };
            var client = server.CreateClient();
            var policy = await server.RegisterPolicyAsync("node", GraphPolicies.Node);
            var deployed = await client.Send(HttpMethod.Post, "/function/deployments/create/local", new JsonObject
            {
                ["name"] = "shaped", ["policy_rule_uri"] = policy, ["policy_rule_parameters"] = new JsonObject { ["tag"] = "shaped" },
            });
            deployed.Status.ShouldBe(200, deployed.Body?.ToJsonString());
            await CreateAsync(client, "misfit", new JsonObject { ["by"] = Spec("boolean") });
            await CreateAsync(client, "fit", new JsonObject { ["by"] = Spec("string"), ["calls"] = Spec("integer") });
            return new Shaped { Server = server, Client = client, Logs = logs };
        }

        private static JsonObject Spec(string type) => new() { ["type"] = type, ["required"] = true };

        private static async Task CreateAsync(HttpClient client, string name, JsonObject outputSchema)
        {
            var created = await client.Send(HttpMethod.Post, "/graphs", new JsonObject
            {
                ["graph_name"] = name, ["graph_version"] = "1", ["graph_release_tag"] = "t",
                ["graph_function_ids"] = new JsonArray("shaped"), ["graph_connection_data"] = new JsonObject(),
                ["graph_output_schema"] = outputSchema,
            });
            created.Status.ShouldBe(200, created.Body?.ToJsonString());
        }

        public Task<Answer> RunAsync(string uri, bool trace = false) => Run(Client, uri, trace);

        public Task<JsonNode> RunAsyncAndWait(string uri) => AsyncGraphRuns.RunAsync(Client, uri);

        /// <summary>Warnings that name graph_output_schema.</summary>
        public List<string> SchemaWarnings() =>
            [.. Logs.WarningsButThePools().Select(e => e.Message).Where(m => m.Contains("graph_output_schema", StringComparison.Ordinal))];

        public ValueTask DisposeAsync() => Server.DisposeAsync();
    }

    private static Task<Answer> Run(HttpClient client, string uri, bool trace = false) =>
        client.Send(HttpMethod.Post, "/graph/execute_graph", new JsonObject { ["graph_uri"] = uri, ["input_data"] = new JsonObject(), ["trace"] = trace });

    [Fact]
    public async Task Enforce_answers_422_naming_the_schema_and_path_and_an_async_run_fails_so()
    {
        await using var shaped = await Shaped.StartAsync("Enforce");

        var refused = await shaped.RunAsync(Shaped.Misfit);
        (refused.Status, refused.Code).ShouldBe((422, ErrorCodes.PolicyError), refused.Body?.ToJsonString());
        refused.Message.ShouldBe($"the result of graph {Shaped.Misfit} does not match its graph_output_schema: {Mismatch}");
        refused.Header(PolicyGrid.Api.Graphs.GraphsApi.ExecutionIdHeader).ShouldNotBeNullOrEmpty();
        // With a trace the sink's output is what is checked, not the answer wrapping it.
        (await shaped.RunAsync(Shaped.Misfit, trace: true)).Status.ShouldBe(422);
        var fits = await shaped.RunAsync(Shaped.Fit, trace: true);
        fits.Status.ShouldBe(200, fits.Body?.ToJsonString());
        fits.Data!["result"]!["by"]!.GetValue<string>().ShouldBe("shaped");

        var failed = await shaped.RunAsyncAndWait(Shaped.Misfit);
        failed["status"]!.GetValue<string>().ShouldBe("failed", failed.ToJsonString());
        failed["error"]!.GetValue<string>().ShouldBe(refused.Message);
        failed["error_code"]!.GetValue<string>().ShouldBe(ErrorCodes.PolicyError);
        failed["result"]!.ToJsonString().ShouldBe("{}");
        (await shaped.RunAsyncAndWait(Shaped.Fit))["status"]!.GetValue<string>().ShouldBe("succeeded");
        shaped.SchemaWarnings().ShouldBeEmpty();
    }

    [Fact]
    public async Task Warn_answers_the_result_and_logs_the_graph_the_execution_and_the_path()
    {
        await using var shaped = await Shaped.StartAsync("Warn");

        var answered = await shaped.RunAsync(Shaped.Misfit);
        answered.Status.ShouldBe(200, answered.Body?.ToJsonString());
        answered.Data!["by"]!.GetValue<string>().ShouldBe("shaped");
        var sync = answered.Header(PolicyGrid.Api.Graphs.GraphsApi.ExecutionIdHeader)!;
        var record = await shaped.RunAsyncAndWait(Shaped.Misfit);
        record["status"]!.GetValue<string>().ShouldBe("succeeded", record.ToJsonString());
        record["result"]!["by"]!.GetValue<string>().ShouldBe("shaped");
        var async = record["execution_id"]!.GetValue<string>();
        (await shaped.RunAsync(Shaped.Fit)).Status.ShouldBe(200);

        shaped.SchemaWarnings().ShouldBe(
        [
            $"graph execution {sync}: the result of graph {Shaped.Misfit} does not match its graph_output_schema: {Mismatch}",
            $"graph execution {async}: the result of graph {Shaped.Misfit} does not match its graph_output_schema: {Mismatch}",
        ], ignoreOrder: false, customMessage: shaped.Logs.ToString());
    }

    [Fact]
    public async Task Off_neither_checks_nor_logs()
    {
        await using var shaped = await Shaped.StartAsync("Off");

        (await shaped.RunAsync(Shaped.Misfit)).Status.ShouldBe(200);
        (await shaped.RunAsyncAndWait(Shaped.Misfit))["status"]!.GetValue<string>().ShouldBe("succeeded");
        shaped.SchemaWarnings().ShouldBeEmpty(shaped.Logs.ToString());
    }

    [Fact]
    public async Task An_output_schema_that_is_not_a_template_is_a_400_naming_it_at_create_and_at_update_and_nothing_is_stored()
    {
        await using var shaped = await Shaped.StartAsync("Warn");

        var created = await shaped.Client.Send(HttpMethod.Post, "/graphs", new JsonObject
        {
            ["graph_name"] = "typo", ["graph_version"] = "1", ["graph_release_tag"] = "t",
            ["graph_function_ids"] = new JsonArray("shaped"), ["graph_output_schema"] = new JsonObject { ["by"] = new JsonObject { ["type"] = "bool" } },
        });
        (created.Status, created.Code).ShouldBe((400, ErrorCodes.ValidationFailed), created.Body?.ToJsonString());
        created.Body!["errors"]!.AsArray().Select(e => e!["path"]!.GetValue<string>()).ShouldBe(["graph_output_schema.by.type"]);
        (await shaped.Client.Send(HttpMethod.Get, "/graphs/typo:1-t")).Status.ShouldBe(404);

        var updated = await shaped.Client.Send(HttpMethod.Put, $"/graphs/{Shaped.Fit}",
            new JsonObject { ["$set"] = new JsonObject { ["graph_output_schema"] = new JsonObject { ["by"] = "string" } } });
        (updated.Status, updated.Code).ShouldBe((400, ErrorCodes.ValidationFailed), updated.Body?.ToJsonString());
        updated.Body!["errors"]!.AsArray().Select(e => e!["path"]!.GetValue<string>()).ShouldBe(["graph_output_schema.by"]);
        var kept = await shaped.Client.Send(HttpMethod.Get, $"/graphs/{Shaped.Fit}");
        kept.Data!["graph_output_schema"]!["by"]!["type"]!.GetValue<string>().ShouldBe("string");
    }

    [Fact]
    public async Task In_the_Dapr_shape_the_workflows_result_is_checked_too()
    {
        // The registry's Dapr composition, its graphs app running the real workflow over function actors that answer {"allowed": true}.
        var actors = new DaprGraphOutageLogTests.FunctionsApp();
        await using var graphsApp = await GraphsAppHost.StartAsync(DaprGraphOutageLogTests.RunningTheWorkflowOn(actors));
        await using var server = graphsApp.Registry(actors, new() { ["PolicyGrid:Runtime:Execution:OutputSchemaMode"] = "Enforce" });
        var client = await DaprGraphOutageLogTests.FarOnActorsAsync(server, """
            {"graph_name": "remote", "graph_version": "1.0", "graph_release_tag": "t", "graph_function_ids": ["far"],
             "graph_output_schema": {"allowed": {"type": "string"}}}
            """);

        var refused = await Run(client, "remote:1.0-t");
        (refused.Status, refused.Code).ShouldBe((422, ErrorCodes.PolicyError), refused.Body?.ToJsonString());
        refused.Message.ShouldBe("the result of graph remote:1.0-t does not match its graph_output_schema: result.allowed: must be a string, not a boolean");
        var failed = await AsyncGraphRuns.RunAsync(client, "remote:1.0-t");
        failed["status"]!.GetValue<string>().ShouldBe("failed", failed.ToJsonString());
        (failed["error"]!.GetValue<string>(), failed["error_code"]!.GetValue<string>()).ShouldBe((refused.Message, ErrorCodes.PolicyError));
    }
}
