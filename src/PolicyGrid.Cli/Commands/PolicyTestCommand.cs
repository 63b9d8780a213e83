using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Templates;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// <c>policygrid policy test &lt;dir&gt; --input '{...}'</c>: runs a policy from disk in the same
/// sandboxed worker the server uses, without a server, so authors see what the registry would
/// answer (template checks included, when a manifest is given) before they push.
/// </summary>
public static class PolicyTestCommand
{
    public static Command Create(CliEnvironment env)
    {
        var dir = new Argument<string>("dir") { Description = "Policy directory: function.py or code/function.py" };
        var input = new Option<string?>("--input") { Description = "input_data as JSON (for eval), or @file to read it from a file" };
        var manifest = new Option<string?>("--manifest") { Description = "PolicyRule JSON: its templates, settings and parameters apply (default: <dir>/manifest.json when present)" };
        var parameters = new Option<string?>("--parameters") { Description = "parameters (merged over the manifest's)" };
        var settings = new Option<string?>("--settings") { Description = "settings (merged over the manifest's)" };
        var context = new Option<string?>("--context") { Description = "context dict the policy starts with (default {})" };
        var action = new Option<string?>("--action") { Description = "run management(action, data) instead of eval" };
        var data = new Option<string?>("--data") { Description = "data for --action (JSON object)" };
        var timeout = new Option<double?>("--timeout") { Description = "deadline in seconds (default: the manifest's resource_estimates.timeout_seconds, else 5, as an executor chooses)" };
        var command = new Command("test", "Run a policy from disk without a server (eval, or management with --action)")
            { dir, input, manifest, parameters, settings, context, action, data, timeout };
        command.SetRun(env, async (parse, session, ct) =>
        {
            var directory = Path.GetFullPath(parse.GetValue(dir)!);
            if (!Directory.Exists(directory)) throw new UsageException($"'{directory}' is not a directory");
            var codeDir = File.Exists(Path.Combine(directory, "function.py")) ? directory
                : File.Exists(Path.Combine(directory, "code", "function.py")) ? Path.Combine(directory, "code")
                : throw new UsageException($"'{directory}' holds neither function.py nor code/function.py");
            var manifestPath = parse.GetValue(manifest) ?? (File.Exists(Path.Combine(directory, "manifest.json")) ? Path.Combine(directory, "manifest.json") : null);
            var rule = LoadRule(manifestPath, directory)
                .WithOverrides(CliCommon.ParseJsonObject(parse.GetValue(settings), "--settings"), CliCommon.ParseJsonObject(parse.GetValue(parameters), "--parameters"));

            var managementAction = parse.GetValue(action);
            // An option the chosen method does not read was dropped without a word: the author then believed what it
            // held had been tested (--input beside --action, --data without it).
            if (managementAction is not null && (parse.GetValue(input) is not null || parse.GetValue(context) is not null))
                throw new UsageException("--input and --context are eval's; --action runs management(action, data) with --data: give one or the other");
            if (managementAction is null && parse.GetValue(data) is not null)
                throw new UsageException("--data is management's data: give --action <name> with it, or --input '<json>' for eval");
            var inputData = CliCommon.ParseJsonObject(parse.GetValue(input), "--input");
            if (managementAction is null && inputData is null) throw new UsageException("give --input '<json>' (or --action for a management command)");

            using var bundle = TestBundle.Copy(codeDir);
            if (File.Exists(Path.Combine(codeDir, "requirements.txt")))
                env.Error.WriteLine("note: policy test does not install requirements.txt; the packages must already be importable by python3");
            // What the policy prints or logs goes to stderr, as the server would put it in its log.
            using var log = AuthorConsoleLog.Factory(env.Error);
            await using var pool = new PythonWorkerPool(new WorkerPoolOptions { Workers = 1 }, log.CreateLogger<PythonWorkerPool>());
            var load = new PolicyLoadSpec(rule.PolicyRuleUri, new BundleDirectory("local-test", bundle.Root, null), rule.PolicySettings, rule.PolicyParameters);
            var deadline = CliCommon.Seconds(parse.GetValue(timeout), "--timeout") is { } given ? TimeSpan.FromSeconds(given) : ExecutorDeadline(rule);
            try
            {
                JsonNode? result;
                if (managementAction is not null)
                {
                    var args = new JsonObject { ["action"] = managementAction, ["data"] = CliCommon.ParseJsonObject(parse.GetValue(data), "--data") ?? [] };
                    // As executors answer it: None is {}, anything else that is no dict a 422 (it used to print and exit 0).
                    result = await pool.InvokeOnceAsync(load, PolicyMethods.Management, args, deadline, ct) switch
                    {
                        null => new JsonObject(),
                        JsonObject answer => answer,
                        var other => throw Problems.PolicyError($"management of {rule.PolicyRuleUri} returned {Described(other)}, not a dict"),
                    };
                }
                else
                {
                    rule.EnsureValidInput(inputData);
                    var args = new JsonObject
                    {
                        ["parameters"] = rule.PolicyParameters.DeepClone(),
                        ["input_data"] = inputData,
                        ["context"] = CliCommon.ParseJsonObject(parse.GetValue(context), "--context") ?? [],
                    };
                    var reply = await pool.InvokeOnceAsync(load, PolicyMethods.Eval, args, deadline, ct);
                    // As executors answer it: a result that is no dict (None, a list) is a 422; it used to print and exit 0.
                    result = reply?["result"] as JsonObject
                        ?? throw Problems.PolicyError($"eval of {rule.PolicyRuleUri} returned {Described(reply?["result"])}, not a dict");
                    if (rule.PolicyOutputSchema.Count > 0)
                        foreach (var problem in TemplateValidator.Validate(rule.PolicyOutputSchema, result, "output"))
                            env.Error.WriteLine($"warning: the result does not match policy_output_schema: {problem}");
                    if (reply?["context"] is JsonObject after && after.Count > 0 && !session.Json)
                        env.Error.WriteLine($"context after eval: {after.ToJsonString()}");
                }
                // Stopping the worker drains its output pump: everything the policy printed comes before the answer.
                await pool.DisposeAsync();
                session.Show(result, console => console.WriteLine(result?.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) ?? "null"));
                return CliCommon.Ok;
            }
            catch (PolicyLoadException e)
            {
                env.Error.WriteLine($"error: the policy cannot be loaded: {e.Reason}");
                return CliCommon.ServerSaidNo;
            }
            catch (PolicyGridException e)
            {
                env.Error.WriteLine($"error: {e.Message} ({e.Status} {e.Code})");
                return CliCommon.ServerSaidNo;
            }
        });
        return command;
    }

    /// <summary>
    /// The deadline an executor gives a call that names none (LocalPolicyExecutor): the policy's own estimate, up to
    /// Execution:MaxTimeout, else Execution:DefaultTimeout. A fixed 10 s passed a policy declaring 2 s that took 4 (a 504
    /// once pushed) and stopped one declaring 60 s at 10.
    /// </summary>
    private static TimeSpan ExecutorDeadline(PolicyRule rule)
    {
        var execution = new PolicyGrid.Runtime.ExecutionOptions();
        return PolicyRule.TimeoutEstimate(rule.ResourceEstimates) is { } estimate
            ? (estimate > execution.MaxTimeout ? execution.MaxTimeout : estimate)
            : execution.DefaultTimeout;
    }

    /// <summary>An answer that is no dict, in the servers' words ("None", "a list").</summary>
    private static string Described(JsonNode? node) => node switch
    {
        null => "None",
        JsonArray => "a list",
        JsonValue v => $"a {v.GetValueKind().ToString().ToLowerInvariant()}",
        _ => "a dict",
    };

    private static PolicyRule LoadRule(string? manifestPath, string directory)
    {
        var document = manifestPath is null
            ? new JsonObject { ["name"] = SafeName(Path.GetFileName(directory)), ["version"] = "0.0", ["release_tag"] = "local", ["type"] = PolicyRule.PythonClassV1 }
            : CliCommon.ReadJsonFile(manifestPath, "manifest");
        // The manifest's code is filled in at push time; here the directory is the code.
        document["code"] = new Uri(directory).AbsoluteUri;
        try
        {
            return PolicyRule.FromJson(document);
        }
        catch (PolicyGridException e)
        {
            throw new UsageException($"the manifest is not a valid PolicyRule: {e.Message}");
        }
    }

    private static string SafeName(string name)
    {
        var cleaned = new string(name.Select(c => char.IsLetterOrDigit(c) || c == '_' ? c : '_').ToArray());
        return cleaned.Length == 0 ? "policy" : cleaned;
    }

    /// <summary>
    /// A throw-away copy of the code the sandboxed worker user can read (authors' directories are
    /// often under a home directory it cannot enter).
    /// </summary>
    private sealed class TestBundle : IDisposable
    {
        private TestBundle(string root) => Root = root;

        public string Root { get; }

        public static TestBundle Copy(string codeDir)
        {
            // A fresh directory of our own: a fixed parent under a shared /tmp would belong to whichever user made it first.
            var root = Directory.CreateTempSubdirectory("policygrid-test-").FullName;
            var target = Path.Combine(root, "code");
            Directory.CreateDirectory(target);
            foreach (var file in Directory.EnumerateFiles(codeDir, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint }))
            {
                var rel = Path.GetRelativePath(codeDir, file);
                if (rel.Split(Path.DirectorySeparatorChar).Contains("__pycache__")) continue;
                var destination = Path.Combine(target, rel);
                Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
                File.Copy(file, destination);
            }
            if (!OperatingSystem.IsWindows())
            {
                var dirMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
                var fileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
                foreach (var d in new[] { root }.Concat(Directory.EnumerateDirectories(root, "*", SearchOption.AllDirectories)))
                    File.SetUnixFileMode(d, dirMode);
                foreach (var f in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)) File.SetUnixFileMode(f, fileMode);
            }
            return new TestBundle(root);
        }

        public void Dispose()
        {
            try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
