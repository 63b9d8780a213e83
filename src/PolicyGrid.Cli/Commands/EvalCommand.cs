using System.CommandLine;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary><c>policygrid eval &lt;uri&gt; --input '{...}' [--executor ID]</c>: run a policy once on an executor (Type 2).</summary>
public static class EvalCommand
{
    public static Command Create(CliEnvironment env)
    {
        var uri = new Argument<string>("uri") { Description = "name:version-release_tag" };
        var input = new Option<string>("--input") { Description = "input_data as JSON, e.g. '{\"ip\": \"10.0.0.1\"}'", Required = true };
        var executor = new Option<string>("--executor") { Description = "executor_id to run on (default: the server's built-in 'local')", DefaultValueFactory = _ => "local" };
        var parameters = new Option<string?>("--parameters") { Description = "parameters merged over the stored ones (JSON object)" };
        var settings = new Option<string?>("--settings") { Description = "settings merged over the stored ones (JSON object)" };
        var contextKey = new Option<string?>("--context-key") { Description = "context_key: share context across calls under this key" };
        var timeout = new Option<double?>("--timeout") { Description = "timeout_seconds for this call" };
        var command = new Command("eval", "Run a policy once on an executor and print what it returned") { uri, input, executor, parameters, settings, contextKey, timeout };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var body = new JsonObject
            {
                ["policy_rule_uri"] = parse.GetValue(uri),
                ["input_data"] = CliCommon.ParseJsonObject(parse.GetValue(input), "--input"),
            };
            if (CliCommon.ParseJsonObject(parse.GetValue(parameters), "--parameters") is { } p) body["parameters"] = p;
            if (CliCommon.ParseJsonObject(parse.GetValue(settings), "--settings") is { } s) body["settings"] = s;
            if (parse.GetValue(contextKey) is { Length: > 0 } key) body["context_key"] = key;
            if (parse.GetValue(timeout) is { } t) body["timeout_seconds"] = t;
            var executorId = parse.GetValue(executor)!;
            var answer = await session.Client().PostAsync($"executor/{Uri.EscapeDataString(executorId)}/execute_policy", body, ct);
            session.Show(answer.Data, console =>
            {
                console.WriteLine(answer.Data?.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) ?? "null");
                if (answer.Deprecated) console.MarkupLine("[yellow]note: this policy is deprecated[/]");
            });
            return CliCommon.Ok;
        });
        return command;
    }
}
