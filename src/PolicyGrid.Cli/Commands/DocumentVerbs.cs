using System.CommandLine;
using System.Text.Json.Nodes;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// The `get` and `query` verbs every document area has (policies, executors, functions, graphs, jobs):
/// same arguments, same query window options, same output; only the path and the columns differ.
/// </summary>
internal static class DocumentVerbs
{
    /// <summary>`get ID`: GET {collectionPath}/{id} and show the document.</summary>
    public static Command Get(CliEnvironment env, string collectionPath, string idName, string idDescription, string summary)
    {
        var id = new Argument<string>(idName) { Description = idDescription };
        var command = new Command("get", summary) { id };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var answer = await session.Client().GetAsync($"{collectionPath}/{Uri.EscapeDataString(parse.GetValue(id)!)}", ct);
            session.Show(answer.Data, console => DocumentView.One(console, answer.Data));
            return CliCommon.Ok;
        });
        return command;
    }

    /// <summary>`query [FILTER] [--limit --skip --sort]`: POST {queryPath} and show a table of <paramref name="columns"/>.</summary>
    public static Command Query(CliEnvironment env, string queryPath, string summary, string filterExample, params string[] columns)
    {
        var filter = new Argument<string?>("filter") { Description = $"Mongo-style filter, e.g. '{filterExample}' (default: everything)", Arity = ArgumentArity.ZeroOrOne };
        var (limit, skip, sort) = QueryOptions();
        var command = new Command("query", summary) { filter, limit, skip, sort };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var body = CliCommon.ParseJson(parse.GetValue(filter), "filter") ?? new JsonObject();
            var answer = await session.Client().PostAsync(QueryPath(queryPath, parse, limit, skip, sort), body, ct);
            session.Show(answer.Data, console => DocumentView.Many(console, answer.Data, columns));
            return CliCommon.Ok;
        });
        return command;
    }

    private static (Option<int?> Limit, Option<int?> Skip, Option<string?> Sort) QueryOptions() =>
        (new Option<int?>("--limit") { Description = "At most this many (default 100, max 1000)" },
         new Option<int?>("--skip") { Description = "Skip this many first" },
         new Option<string?>("--sort") { Description = "field:asc|desc" });

    private static string QueryPath(string path, ParseResult parse, Option<int?> limit, Option<int?> skip, Option<string?> sort)
    {
        var query = new List<string>();
        if (parse.GetValue(limit) is { } l) query.Add($"limit={l}");
        if (parse.GetValue(skip) is { } s) query.Add($"skip={s}");
        if (parse.GetValue(sort) is { Length: > 0 } o) query.Add($"sort={Uri.EscapeDataString(o)}");
        return query.Count == 0 ? path : $"{path}?{string.Join("&", query)}";
    }
}
