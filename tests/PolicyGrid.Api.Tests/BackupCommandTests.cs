using System.Text.Json.Nodes;
using PolicyGrid.Cli.Commands;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>`policygrid backup`: a copy of a running server's data directory that another server starts on.</summary>
public sealed class BackupCommandTests : IDisposable
{
    private const string Counter = """
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                context["count"] = context.get("count", 0) + 1
                return {"count": context["count"]}
        """;

    private readonly string _work = Directory.CreateTempSubdirectory("pg-backup-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_work, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static Task<(int Code, string Out, string Error)> BackupAsync(params string[] args) => BackupAsync(CancellationToken.None, args);

    private static async Task<(int Code, string Out, string Error)> BackupAsync(CancellationToken interrupt, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(output), output, error, _ => throw new InvalidOperationException("backup must not need a server"));
        var code = await CliApp.RunAsync(["backup", .. args], env, interrupt);
        return (code, output.ToString(), error.ToString());
    }

    private static JsonObject Count(string uri) => new() { ["policy_rule_uri"] = uri, ["input_data"] = new JsonObject(), ["context_key"] = "tally" };

    [Fact]
    public async Task A_backup_taken_while_the_server_writes_starts_a_server_with_every_policy_bundle_and_context()
    {
        // There was no way to back up a running server's data but copying its files, which can tear the database
        // (recent commits live in policygrid.db-wal until SQLite moves them into the main file).
        var ct = TestContext.Current.CancellationToken;
        var data = Path.Combine(_work, "data");
        var backup = Path.Combine(_work, "backup");
        int before;
        string code;
        await using (var server = new GridServer { DataDirectory = data })
        {
            var http = server.CreateClient();
            var uri = await server.RegisterPolicyAsync("tally", Counter);
            code = (await http.Send(HttpMethod.Get, $"/policy/{uri}")).Data!["code"]!.GetValue<string>();
            for (var i = 0; i < 2; i++) (await http.Send(HttpMethod.Post, "/executor/local/execute_policy", Count(uri))).Status.ShouldBe(200);

            // The server goes on counting while the backup is taken.
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var writing = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested) await http.Send(HttpMethod.Post, "/executor/local/execute_policy", Count(uri));
            }, ct);
            var (exit, output, error) = await BackupAsync(backup, "--data", data);
            await stop.CancelAsync();
            await writing;

            exit.ShouldBe(0, error);
            output.ShouldContain($"backed up {data} to {backup}: the database (");
            output.ShouldContain("and 1 bundle (");
            // One whole file: nothing of it left in a write-ahead log beside it.
            Directory.GetFiles(backup).Select(Path.GetFileName).ShouldBe(["policygrid.db"]);
            before = (await http.Send(HttpMethod.Post, "/executor/local/execute_policy", Count(uri))).Data!["count"]!.GetValue<int>();
        }

        await using var restored = new GridServer { DataDirectory = backup };
        var client = restored.CreateClient();
        var policy = await client.Send(HttpMethod.Get, "/policy/tally:1.0-test");
        policy.Status.ShouldBe(200, policy.Message);
        policy.Data!["code"]!.GetValue<string>().ShouldBe(code);
        var counted = await client.Send(HttpMethod.Post, "/executor/local/execute_policy", Count("tally:1.0-test"));
        counted.Status.ShouldBe(200, counted.Message);
        // The backup holds the context as it was at one moment of the writes: after the first two, before the last.
        counted.Data!["count"]!.GetValue<int>().ShouldBeInRange(3, before);
    }

    [Fact]
    public async Task A_directory_without_a_database_is_refused_naming_it_and_nothing_is_written()
    {
        // A mistyped --data must not give an empty "backup" that a restore would start an empty server on.
        var missing = Path.Combine(_work, "no-such-data");
        var backup = Path.Combine(_work, "backup");

        var (exit, _, error) = await BackupAsync(backup, "--data", missing);

        exit.ShouldBe(1);
        error.ShouldBe($"error: backup not made: {missing} holds no PolicyGrid database (policygrid.db): give --data the directory the server runs on{Environment.NewLine}");
        Directory.Exists(backup).ShouldBeFalse();
        Directory.Exists(missing).ShouldBeFalse();
    }

    [Fact]
    public async Task A_destination_that_holds_files_is_refused_and_left_as_it_was()
    {
        var data = Path.Combine(_work, "data");
        await using (var server = new GridServer { DataDirectory = data })
            await server.RegisterPolicyAsync("kept", Counter);
        var backup = Directory.CreateDirectory(Path.Combine(_work, "old-backup")).FullName;
        File.WriteAllText(Path.Combine(backup, "policygrid.db"), "an older backup");

        var (exit, _, error) = await BackupAsync(backup, "--data", data);

        exit.ShouldBe(1);
        error.ShouldContain($"the destination {backup} is not empty");
        File.ReadAllText(Path.Combine(backup, "policygrid.db")).ShouldBe("an older backup");
    }

    [Fact]
    public async Task Ctrl_c_during_a_backup_says_the_copy_is_partial_and_exits_130()
    {
        // The interruption ended with exit 1 and no word, leaving a directory serve starts on with bundles missing.
        var data = Path.Combine(_work, "data");
        await using (var server = new GridServer { DataDirectory = data })
            await server.RegisterPolicyAsync("tally", Counter);
        var backup = Path.Combine(_work, "backup");

        var (exit, output, error) = await BackupAsync(new CancellationToken(canceled: true), backup, "--data", data);

        exit.ShouldBe(CliCommon.Interrupted, error);
        error.ShouldBe($"interrupted: backup not made; {backup} holds a partial copy: remove it before using that directory\n", StringCompareShould.IgnoreLineEndings);
        output.ShouldBeEmpty();
    }
}
