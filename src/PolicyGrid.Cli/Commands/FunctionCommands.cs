using System.CommandLine;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary><c>policygrid function deploy|call|manage|get|query|remove</c> (Type 4 stateful functions).</summary>
public static class FunctionCommands
{
    public static Command Create(CliEnvironment env)
    {
        var function = new Command("function", "Deploy, call and remove stateful policy functions (Type 4)");
        function.Add(Deploy(env));
        function.Add(Call(env));
        function.Add(Manage(env));
        function.Add(DocumentVerbs.Get(env, "function", "name", "The function's name", "Show a function's document"));
        function.Add(DocumentVerbs.Query(env, "function/query", "Find functions", "{\"function_tags\": \"edge\"}", "function_id", "function_policy_rule_uri", "function_executor_id", "replicas", "status"));
        function.Add(Remove(env));
        return function;
    }

    private static Command Deploy(CliEnvironment env)
    {
        var name = new Argument<string>("name") { Description = "The function's name (its id)" };
        var policy = new Option<string>("--policy") { Description = "The policy URI to deploy, name:version-release_tag", Required = true };
        var executor = new Option<string>("--executor") { Description = "executor_id; omit to let the allocation rule pick", DefaultValueFactory = _ => "" };
        var parameters = new Option<string?>("--parameters") { Description = "policy_rule_parameters as a JSON object, merged over the policy's" };
        var replicas = new Option<int>("--replicas") { Description = "Independent instances (each with its own state)", DefaultValueFactory = _ => 1 };
        var autoscale = new Option<string?>("--autoscale") { Description = "min:max to grow and shrink instances by queue depth, e.g. 1:4" };
        var tags = new Option<string[]>("--tag") { Description = "A function tag (repeatable)" };
        var command = new Command("deploy", "Deploy a policy as a stateful function") { name, policy, executor, parameters, replicas, autoscale, tags };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var body = new JsonObject
            {
                ["name"] = parse.GetValue(name),
                ["policy_rule_uri"] = parse.GetValue(policy),
                ["policy_rule_parameters"] = CliCommon.ParseJsonObject(parse.GetValue(parameters), "--parameters") ?? new JsonObject(),
                ["replicas"] = parse.GetValue(replicas),
                ["function_tags"] = new JsonArray([.. (parse.GetValue(tags) ?? []).Select(t => (JsonNode)t)]),
            };
            if (parse.GetValue(autoscale) is { Length: > 0 } range)
            {
                var parts = range.Split(':');
                if (parts.Length != 2 || !int.TryParse(parts[0], out var min) || !int.TryParse(parts[1], out var max))
                    throw new UsageException($"--autoscale '{range}' is not min:max, e.g. 1:4");
                body["autoscaling"] = new JsonObject { ["enabled"] = true, ["min_replicas"] = min, ["max_replicas"] = max };
            }
            session.PolicyNamed = parse.GetValue(policy);
            var answer = await session.Client().PostAsync($"function/deployments/create/{Uri.EscapeDataString(parse.GetValue(executor) ?? "")}", body, ct);
            session.Show(answer.Data, console => console.MarkupLine(
                $"deployed function [bold]{Markup.Escape(answer.Data?["function_id"]?.ToString() ?? "")}[/] on executor {Markup.Escape(answer.Data?["function_executor_id"]?.ToString() ?? "")}"));
            return CliCommon.Ok;
        });
        return command;
    }

    private static Command Call(CliEnvironment env)
    {
        var name = new Argument<string>("name") { Description = "The function's name" };
        var input = new Argument<string?>("input") { Description = "The input data as JSON (default {})", Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("call", "Call a function and print what it answered") { name, input };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var body = CliCommon.ParseJson(parse.GetValue(input), "input") ?? new JsonObject();
            var answer = await session.Client().PostAsync($"function/call_function/{Uri.EscapeDataString(parse.GetValue(name)!)}", body, ct);
            session.Show(answer.Data, console => DocumentView.One(console, answer.Data));
            return CliCommon.Ok;
        });
        return command;
    }

    private static Command Manage(CliEnvironment env)
    {
        var name = new Argument<string>("name") { Description = "The function's name" };
        var action = new Argument<string>("action") { Description = "The management action" };
        var data = new Argument<string?>("data") { Description = "The action's data as a JSON object (default {})", Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("manage", "Run a management action on the function's live instance") { name, action, data };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var body = new JsonObject
            {
                ["action"] = parse.GetValue(action),
                ["data"] = CliCommon.ParseJsonObject(parse.GetValue(data), "data") ?? new JsonObject(),
            };
            var answer = await session.Client().PostAsync($"function/{Uri.EscapeDataString(parse.GetValue(name)!)}/management", body, ct);
            session.Show(answer.Data, console => DocumentView.One(console, answer.Data));
            return CliCommon.Ok;
        });
        return command;
    }

    private static Command Remove(CliEnvironment env)
    {
        var name = new Argument<string>("name") { Description = "The function's name" };
        var command = new Command("remove", "Stop a function and forget its state") { name };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var answer = await session.Client().DeleteAsync($"function/deployments/remove/{Uri.EscapeDataString(parse.GetValue(name)!)}", ct);
            session.Show(answer.Data, console => console.MarkupLine($"removed function [bold]{Markup.Escape(answer.Data?["function_id"]?.ToString() ?? "")}[/]"));
            return CliCommon.Ok;
        });
        return command;
    }
}
