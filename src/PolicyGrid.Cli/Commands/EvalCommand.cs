using System.CommandLine;
using System.Text.Json.Nodes;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;
using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// <c>policygrid eval &lt;uri&gt; --input '{...}' [--executor ID | --local]</c>: run a policy once on an
/// executor (Type 2), or with <c>--local</c> here on this machine (Type 1: the policy and its bundle
/// are fetched from the server and run in a sandboxed local worker).
/// </summary>
public static class EvalCommand
{
    public static Command Create(CliEnvironment env)
    {
        var uri = new Argument<string>("uri") { Description = "name:version-release_tag" };
        var input = new Option<string>("--input") { Description = "input_data as JSON, e.g. '{\"ip\": \"10.0.0.1\"}', or @file to read it from a file", Required = true };
        var executor = new Option<string?>("--executor") { Description = "executor_id to run on (default: the server's built-in 'local')" };
        var local = new Option<bool>("--local") { Description = "Fetch the policy and bundle and run it on this machine (Type 1) instead of on an executor" };
        var parameters = new Option<string?>("--parameters") { Description = "parameters merged over the stored ones (JSON object)" };
        var settings = new Option<string?>("--settings") { Description = "settings merged over the stored ones (JSON object)" };
        var contextKey = new Option<string?>("--context-key") { Description = "context_key: share context across calls under this key" };
        var timeout = new Option<double?>("--timeout") { Description = "timeout_seconds for this call" };
        var command = new Command("eval", "Run a policy once on an executor and print what it returned") { uri, input, executor, local, parameters, settings, contextKey, timeout };
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
            if (CliCommon.Seconds(parse.GetValue(timeout), "--timeout") is { } t) body["timeout_seconds"] = t;
            session.PolicyNamed = parse.GetValue(uri);
            if (parse.GetValue(local))
            {
                if (parse.GetValue(executor) is not null) throw new UsageException("--executor and --local exclude each other");
                return await EvaluateHereAsync(session, body, ct);
            }
            var executorId = parse.GetValue(executor) ?? "local";
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

    private static async Task<int> EvaluateHereAsync(CliSession session, JsonObject body, CancellationToken ct)
    {
        var (http, server, token) = session.Connection();
        using var client = new PolicyGridClient(http, new PolicyGridClientOptions { Server = server, Token = token, Timeout = session.AnswerTimeout(), OnWarning = w => session.Warn(w.Message) });
        // What the policy prints goes to stderr (stdout holds the answer alone, for scripts).
        using var log = AuthorConsoleLog.Factory(session.Env.Error);
        try
        {
            var options = new LocalPolicyEvaluatorOptions
            {
                LoggerFactory = log,
                PolicyRuleUri = body["policy_rule_uri"]!.GetValue<string>(),
                Mode = EvaluationMode.Local,
                // A one-shot command: the sandboxed worker costs little here and keeps a bad policy from taking the CLI down.
                Isolation = LocalIsolation.WorkerProcess,
                Parameters = body["parameters"] as JsonObject,
                Settings = body["settings"] as JsonObject,
            };
            // Without --timeout the policy's own resource_estimates.timeout_seconds decides, as it does for eval on an
            // executor: a fixed 10 s let a policy declaring 1 s run on locally where the server answered 504.
            if (body["timeout_seconds"] is { } t) options = options with { CallDeadline = TimeSpan.FromSeconds(t.GetValue<double>()) };
            await using var evaluator = await LocalPolicyEvaluator.CreateAsync(client, options, ct);
            var result = await evaluator.ExecutePolicyRuleAsync(body["input_data"], null, ct);
            // Stopping the worker drains its output: what the policy printed comes before the answer.
            await evaluator.DisposeAsync();
            session.Show(result, console => console.WriteLine(result.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true })));
            return CliCommon.Ok;
        }
        catch (PolicyGridUnreachableException e)
        {
            // As every other verb says it (RegistryClient): nothing answered there, so say what to check.
            session.Env.Error.WriteLine(e.InnerException is HttpRequestException transport
                ? $"error: {Client.RegistryClient.Unreachable(transport, e.Server)}"
                : $"error: {e.Reason}");
            return CliCommon.Unreachable;
        }
        catch (PolicyGridApiException e)
        {
            session.Env.Error.WriteLine($"error: {Client.RegistryClient.OneLine(e.Reason)} ({e.Status} {e.Code})");
            if (session.TokenHint(e.Status) is { } hint) session.Env.Error.WriteLine(hint);
            if (CliCommon.RetryHint(e.RetryAfterSeconds) is { } retry) session.Env.Error.WriteLine(retry);
            if (e.Status == 404 && await session.MissingPolicyHintAsync(ct) is { } missing) session.Env.Error.WriteLine(missing);
            return CliCommon.ServerSaidNo;
        }
    }
}
