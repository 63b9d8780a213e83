using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// <c>policygrid job submit|get|wait|query|cancel</c> (Type 3). <c>wait</c> (and <c>submit --wait</c>)
/// long-polls the server and shows the job's status and elapsed time while it runs; it exits 0 when
/// the job succeeded, 1 when it failed, timed out or was cancelled, 4 when the wait ran out first.
/// </summary>
public static class JobCommands
{
    public const int StillRunning = 4;

    public static Command Create(CliEnvironment env)
    {
        var job = new Command("job", "Run a policy once as a job, follow it, find and cancel jobs");
        job.Add(Submit(env));
        job.Add(DocumentVerbs.Get(env, "jobs", "job_id", "The job id", "Show a job's status and result"));
        job.Add(Wait(env));
        job.Add(DocumentVerbs.Query(env, "jobs/query", "Find jobs", "{\"status\": \"running\"}", "job_id", "name", "policy_rule_uri", "executor_id", "status", "created_at"));
        job.Add(Cancel(env));
        return job;
    }

    private static Command Submit(CliEnvironment env)
    {
        var policy = new Argument<string>("policy_rule_uri") { Description = "The policy to run, e.g. ip_allowlist:1.0-beta" };
        var executor = new Option<string?>("--executor") { Description = "executor_id to run on (default: chosen by the server's allocation rule)" };
        var name = new Option<string?>("--name") { Description = "A name for the job" };
        var inputs = new Option<string?>("--inputs") { Description = "The input_data as a JSON object" };
        var inputsFile = new Option<string?>("--inputs-file") { Description = "Read the input_data from a JSON file" };
        var parameters = new Option<string?>("--params") { Description = "policy_rule_parameters overrides as a JSON object" };
        var selector = new Option<string[]>("--selector") { Description = "node_selector label key=value (repeatable)" };
        var timeout = new Option<double?>("--timeout") { Description = "timeout_seconds for the job" };
        var wait = new Option<bool>("--wait") { Description = "Wait for the job to end, showing its progress" };
        var command = new Command("submit", "Submit a job") { policy, executor, name, inputs, inputsFile, parameters, selector, timeout, wait };
        command.SetRun(env, async (parse, session, ct) =>
        {
            if (parse.GetValue(inputs) is not null && parse.GetValue(inputsFile) is not null)
                throw new UsageException("give --inputs or --inputs-file, not both");
            var input = parse.GetValue(inputsFile) is { } file
                ? CliCommon.ReadJsonFile(file, "--inputs-file")
                : CliCommon.ParseJsonObject(parse.GetValue(inputs), "--inputs") ?? [];
            var labels = new JsonObject();
            foreach (var pair in parse.GetValue(selector) ?? [])
            {
                var kv = pair.Split('=', 2);
                if (kv.Length != 2 || kv[0].Length == 0) throw new UsageException($"--selector '{pair}' is not key=value");
                labels[kv[0]] = kv[1];
            }
            var body = new JsonObject
            {
                ["name"] = parse.GetValue(name) ?? "",
                ["policy_rule_uri"] = parse.GetValue(policy),
                ["policy_rule_parameters"] = CliCommon.ParseJsonObject(parse.GetValue(parameters), "--params") ?? [],
                ["node_selector"] = labels,
                ["inputs"] = input,
            };
            if (CliCommon.Seconds(parse.GetValue(timeout), "--timeout") is { } seconds) body["timeout_seconds"] = seconds;
            var path = parse.GetValue(executor) is { Length: > 0 } id ? $"jobs/submit/{Uri.EscapeDataString(id)}" : "jobs/submit";
            session.PolicyNamed = parse.GetValue(policy);
            var answer = await session.Client().PostAsync(path, body, ct);
            var jobId = answer.Data?["job_id"]?.GetValue<string>() ?? "";
            if (!parse.GetValue(wait))
            {
                session.Show(answer.Data, console => console.MarkupLine(
                    $"submitted job [bold]{Markup.Escape(jobId)}[/] to executor {Markup.Escape(answer.Data?["executor_id"]?.ToString() ?? "")}; follow it with: policygrid job wait {Markup.Escape(jobId)}"));
                return CliCommon.Ok;
            }
            session.Note($"submitted job {jobId} to executor {answer.Data?["executor_id"]}");
            return await FollowAsync(session, jobId, null, ct);
        });
        return command;
    }

    private static Command Wait(CliEnvironment env)
    {
        var id = new Argument<string>("job_id");
        var timeout = new Option<double?>("--timeout") { Description = "Give up waiting after this many seconds (the job keeps running); default: wait until it ends" };
        var command = new Command("wait", "Wait for a job to end, showing its progress") { id, timeout };
        command.SetRun(env, (parse, session, ct) => FollowAsync(session, parse.GetValue(id)!, CliCommon.Seconds(parse.GetValue(timeout), "--timeout", zeroAllowed: true), ct));
        return command;
    }

    private static Command Cancel(CliEnvironment env)
    {
        var id = new Argument<string>("job_id");
        var command = new Command("cancel", "Cancel a job") { id };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var answer = await session.Client().DeleteAsync($"jobs/{Uri.EscapeDataString(parse.GetValue(id)!)}", ct);
            var jobId = Markup.Escape(answer.Data?["job_id"]?.ToString() ?? "");
            var status = answer.Data?["status"]?.ToString() ?? "";
            // A job that had already ended is answered unchanged: "job j is succeeded" read as if cancel did something.
            session.Show(answer.Data, console => console.MarkupLine(status == "cancelled"
                ? $"job [bold]{jobId}[/] is cancelled"
                : $"job [bold]{jobId}[/] had already ended ({Markup.Escape(status)}): nothing to cancel"));
            return CliCommon.Ok;
        });
        return command;
    }

    /// <summary>Long-polls the job (the server holds each ask until the job ends or a few seconds pass) and shows where it is.</summary>
    private static async Task<int> FollowAsync(CliSession session, string jobId, double? timeoutSeconds, CancellationToken ct)
    {
        var client = session.Client();
        // Ctrl-C stops the waiting, not the job.
        session.Interrupted = $"interrupted: job {jobId} keeps running; `policygrid job wait {jobId}` follows it again, `policygrid job cancel {jobId}` stops it";
        var path = $"jobs/{Uri.EscapeDataString(jobId)}";
        var clock = Stopwatch.StartNew();
        var limit = timeoutSeconds is { } t ? TimeSpan.FromSeconds(t) : TimeSpan.MaxValue;
        JsonNode? job = (await client.GetAsync(path, ct)).Data;

        async Task PollAsync(Action<string> show)
        {
            while (!Ended(job) && clock.Elapsed < limit)
            {
                show($"job {jobId}: {Status(job)} · {clock.Elapsed.TotalSeconds:0}s");
                var left = limit - clock.Elapsed;
                var ask = left < TimeSpan.FromSeconds(5) ? Math.Max(0.1, left.TotalSeconds) : 5;
                job = (await client.GetAsync($"{path}?wait={ask.ToString("0.#", CultureInfo.InvariantCulture)}", ct)).Data;
            }
        }

        // A spinner is for a terminal: on a pipe or file Spectre printed its first frame as a line above the result.
        if (session.Json || !session.Env.Console.Profile.Capabilities.Interactive) await PollAsync(_ => { });
        else await session.Env.Console.Status().Spinner(Spinner.Known.Dots).StartAsync($"job {jobId}: {Status(job)}", ctx => PollAsync(text => ctx.Status(Markup.Escape(text))));

        session.Show(job, console =>
        {
            var status = Status(job);
            var colour = status == "succeeded" ? "green" : Ended(job) ? "red" : "yellow";
            console.MarkupLine($"job [bold]{Markup.Escape(jobId)}[/]: [{colour}]{Markup.Escape(status)}[/] after {clock.Elapsed.TotalSeconds:0.#}s");
            if (job?["error"]?.GetValue<string>() is { Length: > 0 } error) console.MarkupLine($"error: {Markup.Escape(error)}");
            if (status == "succeeded") console.WriteLine(job?["result"]?.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) ?? "{}");
        });
        return !Ended(job) ? StillRunning : Status(job) == "succeeded" ? CliCommon.Ok : CliCommon.ServerSaidNo;
    }

    private static string Status(JsonNode? job) => job?["status"]?.GetValue<string>() ?? "unknown";

    private static bool Ended(JsonNode? job) => Status(job) is "succeeded" or "failed" or "timed_out" or "cancelled";
}
