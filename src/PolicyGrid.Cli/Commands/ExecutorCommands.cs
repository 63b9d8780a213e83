using System.CommandLine;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary><c>policygrid executor add|get|query|delete</c>.</summary>
public static class ExecutorCommands
{
    public static Command Create(CliEnvironment env)
    {
        var executor = new Command("executor", "Register, read, find and remove executors");
        executor.Add(Add(env));
        executor.Add(DocumentVerbs.Get(env, "executor", "executor_id", "executor_id", "Show an executor"));
        executor.Add(DocumentVerbs.Query(env, "executor/query", "Find executors", "{\"executor_status\": \"healthy\"}", "executor_id", "executor_host_uri", "executor_status"));
        executor.Add(Delete(env));
        return executor;
    }

    private static Command Add(CliEnvironment env)
    {
        var id = new Argument<string>("id") { Description = "executor_id" };
        var uri = new Option<string>("--uri") { Description = "executor_host_uri: http(s)://host:port, dapr://app-id or inproc://local", Required = true };
        var labels = new Option<string[]>("--label") { Description = "A label key=value (repeatable); jobs' node_selector matches these", AllowMultipleArgumentsPerToken = false };
        var vcpus = new Option<int?>("--vcpus") { Description = "executor_hardware_info.vcpus.count" };
        var memory = new Option<string?>("--memory") { Description = "executor_hardware_info.memory, e.g. 32Gi" };
        var command = new Command("add", "Register an executor") { id, uri, labels, vcpus, memory };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var labelObject = new JsonObject();
            foreach (var label in parse.GetValue(labels) ?? [])
            {
                var pair = label.Split('=', 2);
                if (pair.Length != 2 || pair[0].Length == 0) throw new UsageException($"--label '{label}' is not key=value");
                labelObject[pair[0]] = pair[1];
            }
            var hardware = new JsonObject();
            if (parse.GetValue(vcpus) is { } count) hardware["vcpus"] = new JsonObject { ["count"] = count };
            if (parse.GetValue(memory) is { Length: > 0 } mem) hardware["memory"] = mem;
            var body = new JsonObject
            {
                ["executor_id"] = parse.GetValue(id),
                ["executor_host_uri"] = parse.GetValue(uri),
                ["executor_metadata"] = new JsonObject { ["labels"] = labelObject },
                ["executor_hardware_info"] = hardware,
            };
            var answer = await session.Client().PostAsync("executor", body, ct);
            session.Show(answer.Data, console => console.MarkupLine($"added executor [bold]{Markup.Escape(answer.Data?["executor_id"]?.ToString() ?? "")}[/] at {Markup.Escape(answer.Data?["executor_host_uri"]?.ToString() ?? "")}"));
            return CliCommon.Ok;
        });
        return command;
    }

    private static Command Delete(CliEnvironment env)
    {
        var id = new Argument<string>("id") { Description = "executor_id" };
        var command = new Command("delete", "Remove an executor") { id };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var answer = await session.Client().DeleteAsync($"executor/{Uri.EscapeDataString(parse.GetValue(id)!)}", ct);
            session.Show(answer.Data, console => console.MarkupLine($"deleted executor [bold]{Markup.Escape(answer.Data?["executor_id"]?.ToString() ?? "")}[/]"));
            return CliCommon.Ok;
        });
        return command;
    }
}
