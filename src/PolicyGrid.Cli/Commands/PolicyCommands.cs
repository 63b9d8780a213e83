using System.CommandLine;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using PolicyGrid.Cli.Client;
using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary><c>policygrid policy push|get|query|delete|test</c>.</summary>
public static class PolicyCommands
{
    /// <summary>Uploads above this size show a progress bar.</summary>
    public const int ProgressThreshold = 1024 * 1024;

    public static Command Create(CliEnvironment env)
    {
        var policy = new Command("policy", "Register, read, find and remove policies");
        policy.Add(Push(env));
        policy.Add(Get(env));
        policy.Add(DocumentVerbs.Query(env, "policy/query", "Find policies", "{\"tags\": {\"$regex\": \"network\"}}", "policy_rule_uri", "status", "tags", "updated_at"));
        policy.Add(Delete(env));
        policy.Add(PolicyTestCommand.Create(env));
        return policy;
    }

    private static Command Push(CliEnvironment env)
    {
        var dir = new Argument<string>("dir") { Description = "Policy directory: function.py (or code/function.py) and, optionally, requirements.txt" };
        var manifest = new Option<string?>("--manifest") { Description = "PolicyRule JSON without code (default: <dir>/manifest.json)" };
        var command = new Command("push", "Zip a policy directory, upload it as a bundle, and create or update the policy") { dir, manifest };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var directory = parse.GetValue(dir)!;
            // The directory first: a mistyped one was reported as "manifest '<dir>/manifest.json' does not exist".
            byte[] zip;
            try { zip = BundleZipper.Zip(directory); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
            var givenManifest = parse.GetValue(manifest);
            var manifestPath = givenManifest ?? Path.Combine(directory, "manifest.json");
            if (givenManifest is null && !File.Exists(manifestPath))
                throw new UsageException($"manifest '{manifestPath}' does not exist: write the PolicyRule without code there, or give --manifest <file>");
            var document = CliCommon.ReadJsonFile(manifestPath, "manifest");

            var client = session.Client();
            var bundle = await UploadAsync(session, client, zip, ct);
            document["code"] = bundle.Data!["code"]!.GetValue<string>();
            var uri = document["policy_rule_uri"]?.GetValue<string>() is { Length: > 0 } given ? given
                : $"{Text(document, "name")}:{Text(document, "version")}-{Text(document, "release_tag")}";

            ServerAnswer saved;
            string verb;
            try
            {
                var current = await client.GetAsync($"policy/{Uri.EscapeDataString(uri)}", ct);
                // A replacement without a status makes the policy active: pushing new code to a retired policy brought it
                // back to life. A manifest that names no status keeps the stored one; one that names it sets it.
                if (!document.ContainsKey("status") && current.Data?["status"] is JsonValue status) document["status"] = status.DeepClone();
                saved = await client.PutAsync($"policy/{Uri.EscapeDataString(uri)}", document, current.ETag, ct);
                verb = "updated";
            }
            catch (ServerFailureException e) when (e.Status == 404)
            {
                saved = await client.PostAsync("policy", document, ct);
                verb = "created";
            }
            session.Show(saved.Data, console =>
                console.MarkupLine($"{verb} [bold]{Markup.Escape(saved.Data?["policy_rule_uri"]?.ToString() ?? uri)}[/] from bundle {Markup.Escape(bundle.Data!["sha256"]!.ToString()[..12])}… ({zip.Length} bytes)"));
            return CliCommon.Ok;
        });
        return command;
    }

    private static async Task<ServerAnswer> UploadAsync(CliSession session, RegistryClient client, byte[] zip, CancellationToken ct)
    {
        if (zip.Length < ProgressThreshold || session.Json || !session.Env.Console.Profile.Capabilities.Interactive)
        {
            var content = new ByteArrayContent(zip);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
            return await client.UploadAsync("bundles", content, ct);
        }
        ServerAnswer? answer = null;
        await session.Env.Console.Progress().StartAsync(async progress =>
        {
            var task = progress.AddTask("uploading bundle", maxValue: zip.Length);
            answer = await client.UploadAsync("bundles", new ProgressContent(zip, "application/zip", sent => task.Value = sent).Typed(), ct);
        });
        return answer!;
    }

    private static Command Get(CliEnvironment env)
    {
        var uri = new Argument<string>("uri") { Description = "name:version-release_tag" };
        var command = new Command("get", "Show a policy") { uri };
        command.SetRun(env, async (parse, session, ct) =>
        {
            session.PolicyNamed = parse.GetValue(uri);
            var answer = await session.Client().GetAsync($"policy/{Uri.EscapeDataString(parse.GetValue(uri)!)}", ct);
            session.Show(answer.Data, console =>
            {
                DocumentView.One(console, answer.Data);
                if (answer.Deprecated) console.MarkupLine("[yellow]this policy is deprecated[/]");
            });
            return CliCommon.Ok;
        });
        return command;
    }

    private static Command Delete(CliEnvironment env)
    {
        var uri = new Argument<string>("uri") { Description = "name:version-release_tag" };
        var force = new Option<bool>("--force") { Description = "Delete even while functions or graphs use it" };
        var command = new Command("delete", "Remove a policy") { uri, force };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var path = $"policy/{Uri.EscapeDataString(parse.GetValue(uri)!)}" + (parse.GetValue(force) ? "?force=true" : "");
            session.PolicyNamed = parse.GetValue(uri);
            // The server's way out is "?force=true", a query parameter: what this verb takes for it is --force.
            session.HintFor = e => e.Status == 409 && !parse.GetValue(force) && e.Message.Contains("force", StringComparison.Ordinal)
                ? $"hint: policygrid policy delete {parse.GetValue(uri)} --force deletes it anyway (its functions keep running their snapshot)"
                : null;
            var answer = await session.Client().DeleteAsync(path, ct);
            session.Show(answer.Data, console => console.MarkupLine($"deleted [bold]{Markup.Escape(answer.Data?["policy_rule_uri"]?.ToString() ?? "")}[/]"));
            return CliCommon.Ok;
        });
        return command;
    }

    private static string Text(JsonObject document, string field) =>
        document[field] is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0 ? s
            : throw new UsageException($"the manifest has no '{field}' (name, version and release_tag make the policy URI)");
}
