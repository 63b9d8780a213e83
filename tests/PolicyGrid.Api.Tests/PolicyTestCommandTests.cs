using PolicyGrid.Cli.Commands;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>`policygrid policy test`: a bundle from disk in a real sandboxed Python worker, no server.</summary>
public sealed class PolicyTestCommandTests : IDisposable
{
    private readonly string workDir = Directory.CreateTempSubdirectory("pg-policy-test-").FullName;

    public void Dispose() => Directory.Delete(workDir, recursive: true);

    private static async Task<(int Code, string Out, string Error)> Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var env = new CliEnvironment(CliEnvironment.PlainConsole(output), output, error, _ => throw new InvalidOperationException("policy test must not need a server"));
        var code = await CliApp.RunAsync(args, env);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task The_ip_allowlist_sample_allows_a_listed_address_and_denies_another()
    {
        var allowed = await Run("policy", "test", Samples.Policy("ip_allowlist"), "--input", """{"ip": "10.0.0.1"}""", "--json");
        allowed.Code.ShouldBe(0, allowed.Error);
        System.Text.Json.Nodes.JsonNode.Parse(allowed.Out)!["allowed"]!.GetValue<bool>().ShouldBeTrue();

        var denied = await Run("policy", "test", Samples.Policy("ip_allowlist"), "--input", """{"ip": "10.9.9.9"}""", "--json");
        denied.Code.ShouldBe(0, denied.Error);
        System.Text.Json.Nodes.JsonNode.Parse(denied.Out)!["allowed"]!.GetValue<bool>().ShouldBeFalse();
    }

    [Fact]
    public async Task Parameters_given_on_the_command_line_override_the_manifest()
    {
        var run = await Run("policy", "test", Samples.Policy("ip_allowlist"), "--input", """{"ip": "10.9.9.9"}""",
            "--parameters", """{"local_allowlist": ["10.9.9.9"]}""", "--json");
        run.Code.ShouldBe(0, run.Error);
        run.Out.ShouldContain("\"allowed\": true");
    }

    [Fact]
    public async Task Input_that_violates_the_manifests_input_schema_is_refused_naming_the_field()
    {
        var run = await Run("policy", "test", Samples.Policy("ip_allowlist"), "--input", """{"ip": "not-an-ip"}""");
        run.Code.ShouldBe(1);
        run.Error.ShouldContain("input_data.ip");
    }

    [Fact]
    public async Task Management_actions_run_with_action_and_data()
    {
        var run = await Run("policy", "test", Samples.Policy("ip_allowlist"), "--action", "update_local_allowlist", "--data", """{"ips": ["1.2.3.4"]}""", "--json");
        run.Code.ShouldBe(0, run.Error);
        run.Out.ShouldContain("1.2.3.4");
    }

    [Fact]
    public async Task A_policy_that_raises_reports_the_exception_type_and_message()
    {
        File.WriteAllText(Path.Combine(workDir, "function.py"), """
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    raise KeyError("missing thing")
            """);
        var run = await Run("policy", "test", workDir, "--input", "{}");
        run.Code.ShouldBe(1);
        run.Error.ShouldContain("KeyError");
        run.Error.ShouldContain("missing thing");
    }

    [Theory]
    [InlineData("--input", "{}", "eval of tests:0.0-local returned None, not a dict")]
    [InlineData("--input", """{"list": true}""", "eval of tests:0.0-local returned a list, not a dict")]
    [InlineData("--action", "list", "management of tests:0.0-local returned a list, not a dict")]
    public async Task An_answer_that_is_not_a_dict_is_the_servers_422_not_printed_as_a_result(string option, string value, string message)
    {
        Directory.CreateDirectory(Path.Combine(workDir, "tests"));
        File.WriteAllText(Path.Combine(workDir, "tests", "function.py"), """
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    return [1, 2] if input_data.get("list") else None
                def management(self, action, data):
                    return None if action == "none" else [1]
            """);
        var run = await Run("policy", "test", Path.Combine(workDir, "tests"), option, value);
        run.Code.ShouldBe(1);
        run.Out.ShouldBeEmpty();
        run.Error.ShouldContain($"error: {message} (422 policy_error)");

        var none = await Run("policy", "test", Path.Combine(workDir, "tests"), "--action", "none", "--json");
        (none.Code, none.Out.Trim()).ShouldBe((0, "{}")); // as executors answer management's None
    }

    [Fact]
    public async Task What_the_policy_prints_or_logs_is_shown_on_stderr_in_order_and_the_answer_alone_on_stdout()
    {
        File.WriteAllText(Path.Combine(workDir, "function.py"), """
            import logging
            import sys

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    print("loading the rule")
                def eval(self, parameters, input_data, context):
                    print("looking at", input_data["ip"])
                    logging.warning("address %s is suspicious", input_data["ip"])
                    print("written to stderr", file=sys.stderr)
                    print("done")
                    return {"allowed": False}
            """);
        var run = await Run("policy", "test", workDir, "--input", """{"ip": "10.9.9.9"}""", "--json");
        run.Code.ShouldBe(0, run.Error);
        System.Text.Json.Nodes.JsonNode.Parse(run.Out)!["allowed"]!.GetValue<bool>().ShouldBeFalse();
        var lines = run.Error.Split('\n').Where(l => l.Contains(" output: ", StringComparison.Ordinal)).ToList();
        lines.Select(l => l[(l.IndexOf(" output: ", StringComparison.Ordinal) + 9)..].TrimEnd()).ShouldBe(
            ["loading the rule", "looking at 10.9.9.9", "WARNING:root:address 10.9.9.9 is suspicious", "written to stderr", "done"]);
    }

    [Fact]
    public async Task A_directory_without_function_py_is_a_usage_error()
    {
        var run = await Run("policy", "test", workDir, "--input", "{}");
        run.Code.ShouldBe(2);
        run.Error.ShouldContain("function.py");
    }

    [Fact]
    public async Task A_manifest_that_is_not_a_valid_policy_is_a_usage_error_naming_the_field()
    {
        File.WriteAllText(Path.Combine(workDir, "function.py"), GridServer.EchoPolicy);
        var manifest = Path.Combine(workDir, "bad.json");
        File.WriteAllText(manifest, """{"name": "x", "version": "1", "release_tag": "a-b", "type": "python_class_v1"}""");
        var run = await Run("policy", "test", workDir, "--manifest", manifest, "--input", "{}");
        run.Code.ShouldBe(2);
        run.Error.ShouldContain("release_tag");
    }
    [Fact]
    public async Task Run_by_a_user_that_is_not_root_the_policy_cannot_read_the_environment_or_memory_of_the_process_that_runs_it()
    {
        // Not root, the workers run as the CLI's (or server's) own uid: only the dumpable flag stands between a policy
        // and /proc/<server>/environ and mem. Run the real CLI as nobody, with a secret in its environment.
        if (Environment.UserName != "root" || !File.Exists("/usr/sbin/runuser")) Assert.Skip("needs root and runuser to run the CLI as another user");
        var dotnet = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "dotnet")).FirstOrDefault(File.Exists);
        if (dotnet is null) Assert.Skip("no dotnet on PATH");
        var cli = Path.Combine(AppContext.BaseDirectory, "policygrid.dll");
        File.WriteAllText(Path.Combine(workDir, "function.py"), """
            import os

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    found = {"uid": os.getuid()}
                    for name in ("environ", "mem"):
                        try:
                            with open(f"/proc/{os.getppid()}/{name}", "rb") as f:
                                found[name] = "SERVER_SECRET" if b"SERVER_SECRET" in f.read(1 << 16) else "read"
                        except OSError as exc:
                            found[name] = type(exc).__name__
                    return found
            """);
        var home = Directory.CreateTempSubdirectory("pg-policy-test-nobody-").FullName;
        try
        {
            await RunTool("chmod", "-R", "a+rX", workDir);
            await RunTool("chown", "nobody", home);
            var start = new System.Diagnostics.ProcessStartInfo("/usr/sbin/runuser") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var arg in new[] { "-u", "nobody", "--", dotnet, cli, "policy", "test", workDir, "--input", "{}", "--json" }) start.ArgumentList.Add(arg);
            start.Environment["SERVER_SECRET"] = "hunter2";
            start.Environment["TMPDIR"] = home;
            start.Environment["HOME"] = home;
            start.Environment["DOTNET_CLI_HOME"] = home;
            using var process = System.Diagnostics.Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
            var stderr = await process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
            await process.WaitForExitAsync(TestContext.Current.CancellationToken);
            process.ExitCode.ShouldBe(0, stderr);
            var found = System.Text.Json.Nodes.JsonNode.Parse(await stdout)!;
            found["uid"]!.GetValue<int>().ShouldBe(65534);
            found["environ"]!.GetValue<string>().ShouldBe("PermissionError");
            found["mem"]!.GetValue<string>().ShouldBe("PermissionError");
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }

    [Fact]
    public async Task Where_the_kernel_refuses_worker_uids_of_their_own_the_workers_run_as_the_shared_user_and_say_so()
    {
        // A user namespace that maps only uids 0-65535, as some container runtimes do: the free uids the pool picks
        // (0x70000000 and up) cannot be used there, nobody (65534) can. Run the real CLI as root inside one.
        if (Environment.UserName != "root") Assert.Skip("needs root to map a user namespace");
        var dotnet = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "dotnet")).FirstOrDefault(File.Exists);
        if (dotnet is null) Assert.Skip("no dotnet on PATH");
        var launcher = Path.Combine(workDir, "in_small_userns.py");
        File.WriteAllText(launcher, """
            import ctypes, os, sys
            libc = ctypes.CDLL(None, use_errno=True)
            go_r, go_w = os.pipe()
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
                    os.write(ready_w, b"E")
                    os._exit(90)
                os.write(ready_w, b"U")
                os.read(go_r, 1)
                os.setgid(0)
                os.setuid(0)
                os.execvp(sys.argv[1], sys.argv[1:])
            if os.read(ready_r, 1) != b"U":
                sys.exit(90)
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write("0 0 65536\n")
            os.write(go_w, b"G")
            sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            """);
        var policy = Path.Combine(workDir, "policy");
        Directory.CreateDirectory(policy);
        File.WriteAllText(Path.Combine(policy, "function.py"), """
            import os

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    return {"uid": os.getuid()}
            """);
        var start = new System.Diagnostics.ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { launcher, dotnet, Path.Combine(AppContext.BaseDirectory, "policygrid.dll"), "policy", "test", policy, "--input", "{}", "--json" })
            start.ArgumentList.Add(arg);
        using var process = System.Diagnostics.Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = await process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken);
        if (process.ExitCode == 90) Assert.Skip("this kernel or container does not allow user namespaces");
        process.ExitCode.ShouldBe(0, stderr);
        System.Text.Json.Nodes.JsonNode.Parse(await stdout)!["uid"]!.GetValue<int>().ShouldBe(65534);
        stderr.ShouldContain("cannot run as uids of their own");
        stderr.ShouldContain("runs as nobody instead");
    }

    private static async Task RunTool(string file, params string[] args)
    {
        using var process = System.Diagnostics.Process.Start(file, args);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken);
        process.ExitCode.ShouldBe(0, $"{file} {string.Join(' ', args)}");
    }

    [Theory]
    [InlineData("--input and --context are eval's", "--action", "get_state", "--input", "{\"ip\": \"10.0.0.1\"}")]
    [InlineData("--input and --context are eval's", "--action", "get_state", "--context", "{}")]
    [InlineData("--data is management's data", "--input", "{\"ip\": \"10.0.0.1\"}", "--data", "{\"ips\": []}")]
    public async Task An_option_the_chosen_method_does_not_read_is_a_usage_error(string message, params string[] args)
    {
        // Each was dropped without a word: the management action ran and --input was never looked at, or eval ran without --data.
        var run = await Run(["policy", "test", Samples.Policy("ip_allowlist"), .. args]);
        run.Code.ShouldBe(2, run.Error);
        run.Error.ShouldStartWith("error: " + message);
        run.Out.ShouldBeEmpty();
    }

    [Fact]
    public async Task Without_timeout_the_policy_gets_the_deadline_its_manifest_declares_as_on_an_executor()
    {
        // A fixed 10 s deadline let a policy declaring 0.5 s answer here where every executor answers 504.
        File.WriteAllText(Path.Combine(workDir, "function.py"), """
            import time

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    time.sleep(3)
                    return {}
            """);
        var manifest = Path.Combine(workDir, "manifest.json");
        File.WriteAllText(manifest, """{"name": "slow", "version": "1.0", "release_tag": "test", "type": "python_class_v1", "resource_estimates": {"timeout_seconds": 0.5}}""");

        var run = await Run("policy", "test", workDir, "--input", "{}");

        run.Code.ShouldBe(1, run.Error);
        run.Error.ShouldContain("ran past its deadline of 0.5s");
        run.Error.ShouldContain("(504 policy_timeout)");
    }
}
