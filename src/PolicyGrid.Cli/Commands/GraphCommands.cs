using System.CommandLine;
using System.Text.Json.Nodes;
using PolicyGrid.Cli.Client;
using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary><c>policygrid graph create|get|query|delete|run|cancel|diagram</c> (Type 5 policy graphs).</summary>
public static class GraphCommands
{
    public static Command Create(CliEnvironment env)
    {
        var graph = new Command("graph", "Register, run and draw graphs of functions (Type 5)");
        graph.Add(CreateGraph(env));
        graph.Add(DocumentVerbs.Get(env, "graphs", "uri", "The graph URI, name:version-release_tag", "Show a graph"));
        graph.Add(DocumentVerbs.Query(env, "graphs/query", "Find graphs", "{\"graph_search_tags\": \"admission\"}", "graph_uri", "graph_description"));
        graph.Add(Delete(env));
        graph.Add(Run(env));
        graph.Add(Cancel(env));
        graph.Add(Diagram(env));
        return graph;
    }

    private static Command CreateGraph(CliEnvironment env)
    {
        var file = new Argument<string>("file") { Description = "A JSON file holding the Graph document" };
        var command = new Command("create", "Register a graph from a JSON file") { file };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var body = CliCommon.ReadJsonFile(parse.GetValue(file)!, "graph");
            var answer = await session.Client().PostAsync("graphs", body, ct);
            session.Show(answer.Data, console => console.MarkupLine($"created graph [bold]{Markup.Escape(answer.Data?["graph_uri"]?.ToString() ?? "")}[/]"));
            return CliCommon.Ok;
        });
        return command;
    }

    private static Command Delete(CliEnvironment env)
    {
        var uri = new Argument<string>("uri") { Description = "The graph URI" };
        var command = new Command("delete", "Delete a graph") { uri };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var answer = await session.Client().DeleteAsync($"graphs/{Uri.EscapeDataString(parse.GetValue(uri)!)}", ct);
            session.Show(answer.Data, console => console.MarkupLine($"deleted graph [bold]{Markup.Escape(answer.Data?["graph_uri"]?.ToString() ?? "")}[/]"));
            return CliCommon.Ok;
        });
        return command;
    }

    private static Command Run(CliEnvironment env)
    {
        var uri = new Argument<string>("uri") { Description = "The graph URI" };
        var input = new Argument<string?>("input") { Description = "input_data as JSON (default {})", Arity = ArgumentArity.ZeroOrOne };
        var trace = new Option<bool>("--trace") { Description = "Also show each node's input, output and duration" };
        var async = new Option<bool>("--async") { Description = "Answer an execution id at once; read it later with GET /graph/executions/{id}" };
        var command = new Command("run", "Execute a graph and print the sink's output") { uri, input, trace, async };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var body = new JsonObject
            {
                ["graph_uri"] = parse.GetValue(uri),
                ["input_data"] = CliCommon.ParseJson(parse.GetValue(input), "input") ?? new JsonObject(),
                ["trace"] = parse.GetValue(trace),
                ["async"] = parse.GetValue(async),
            };
            var answer = await session.Client().PostAsync("graph/execute_graph", body, ct);
            session.Show(answer.Data, console => DocumentView.One(console, answer.Data));
            return CliCommon.Ok;
        });
        return command;
    }

    private static Command Cancel(CliEnvironment env)
    {
        var id = new Argument<string>("execution_id") { Description = "The id an --async run answered" };
        var command = new Command("cancel", "Cancel a running --async graph run") { id };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var answer = await session.Client().DeleteAsync($"graph/executions/{Uri.EscapeDataString(parse.GetValue(id)!)}", ct);
            var executionId = Markup.Escape(answer.Data?["execution_id"]?.ToString() ?? "");
            var status = answer.Data?["status"]?.ToString() ?? "";
            // A run that had already ended is answered unchanged, as `job cancel` says of a job.
            session.Show(answer.Data, console => console.MarkupLine(status == "cancelled"
                ? $"graph execution [bold]{executionId}[/] is cancelled"
                : $"graph execution [bold]{executionId}[/] had already ended ({Markup.Escape(status)}): nothing to cancel"));
            return CliCommon.Ok;
        });
        return command;
    }

    private static Command Diagram(CliEnvironment env)
    {
        var uri = new Argument<string>("uri") { Description = "The graph URI" };
        var command = new Command("diagram", "Print the graph as a Mermaid flowchart") { uri };
        command.SetRun(env, async (parse, session, ct) =>
        {
            // Not an envelope: the diagram is text/vnd.mermaid, so it is read apart from the JSON verbs.
            var diagram = await session.Client().GetTextAsync($"graphs/{Uri.EscapeDataString(parse.GetValue(uri)!)}/diagram", ct);
            await session.Env.Out.WriteAsync(diagram);
            return CliCommon.Ok;
        });
        return command;
    }
}
