using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

public sealed class PoolAdmissionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_full_queue_answers_429_with_retry_after_and_admits_again_once_drained()
    {
        var options = PoolFixture.TestOptions(workers: 1);
        options.MaxQueue = 2;
        var logs = new CapturingLoggerProvider();
        await using var pool = new PythonWorkerPool(options, logs.CreateLogger<PythonWorkerPool>());
        await pool.StartAsync(Ct);

        // The policy holds its worker until the test drops a release file next to it. Found from its own file: with a
        // /tmp of its own, the worker sees the host's bundle directory (live, so the file shows once made) elsewhere.
        var bundle = TestBundles.FromSource("""
            import os, time

            RELEASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "release")

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    if input_data.get("warm"):
                        return {"released": False}
                    while not os.path.exists(RELEASE):
                        time.sleep(0.005)
                    return {"released": True}
            """);
        var release = Path.Combine(bundle.Root, "release");
        PolicyInvocation Call(bool warm = false) => new("holder", new PolicyLoadSpec("holder:1-a", bundle, [], []), PolicyMethods.Eval,
            new JsonObject { ["parameters"] = new JsonObject(), ["input_data"] = new JsonObject { ["warm"] = warm }, ["context"] = new JsonObject() },
            TimeSpan.FromSeconds(20));
        // The policy's own worker group started: pool.StartAsync starts only the first group, and calls that find their
        // group starting wait for it and are then admitted in no particular order (the third could take a place and
        // one of the first two get the 429).
        (await pool.InvokeAsync(Call(warm: true), Ct))!["result"]!["released"]!.GetValue<bool>().ShouldBeFalse();

        var first = pool.InvokeAsync(Call(), Ct);
        var second = pool.InvokeAsync(Call(), Ct);
        var rejected = await Should.ThrowAsync<PolicyGridException>(() => pool.InvokeAsync(Call(), Ct));
        rejected.Status.ShouldBe(429);
        rejected.Code.ShouldBe("overloaded");
        rejected.RetryAfterSeconds.ShouldBe(1);

        await File.WriteAllTextAsync(release, "go", Ct);
        (await first)!["result"]!["released"]!.GetValue<bool>().ShouldBeTrue();
        (await second)!["result"]!["released"]!.GetValue<bool>().ShouldBeTrue();
        (await pool.InvokeAsync(Call(), Ct))!["result"]!["released"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task A_missing_interpreter_is_reported_clearly()
    {
        var options = PoolFixture.TestOptions(workers: 1);
        options.PythonExecutable = "/nonexistent/python3";
        options.FallbackPythonExecutable = "";
        await using var pool = new PythonWorkerPool(options, new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());
        var error = await Should.ThrowAsync<InvalidOperationException>(() => pool.StartAsync(Ct));
        error.Message.ShouldContain("/nonexistent/python3");
        error.Message.ShouldContain("was not found");

        // Calls answer 503 with the reason instead of an internal error.
        var call = await Should.ThrowAsync<PolicyGridException>(() => pool.InvokeAsync(new PolicyInvocation("k",
            new PolicyLoadSpec("p:1-a", TestBundles.Empty(), [], []), PolicyMethods.Eval, [], TimeSpan.FromSeconds(1)), Ct));
        call.Status.ShouldBe(503);
        call.Code.ShouldBe("backend_unavailable");
        call.Message.ShouldContain("/nonexistent/python3");
    }
}

public sealed class WorkerRecyclingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // A pool of one worker with a 1 s lifetime CPU cap, and a call of a policy whose eval burns CPU while
    // input_data.burn is set (as `burn` says) and answers its pid.
    private static (PythonWorkerPool Pool, Func<bool, Task<int>> Call) Burner(string burn)
    {
        var options = PoolFixture.TestOptions(workers: 1);
        options.CpuSecondsPerWorker = 1;
        var pool = new PythonWorkerPool(options, new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());
        var bundle = TestBundles.FromSource($$"""
            import os, resource

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    if input_data.get("burn"):
            {{burn}}
                    return {"pid": os.getpid()}
            """);
        async Task<int> Call(bool burning) => (await pool.InvokeAsync(new PolicyInvocation("burner", new PolicyLoadSpec("burner:1-a", bundle, [], []), PolicyMethods.Eval,
            new JsonObject { ["input_data"] = new JsonObject { ["burn"] = burning }, ["context"] = new JsonObject() }, TimeSpan.FromSeconds(30)), Ct))!["result"]!["pid"]!.GetValue<int>();
        return (pool, Call);
    }

    [Fact]
    public async Task A_worker_near_its_lifetime_cpu_cap_is_replaced_before_it_hits_it()
    {
        var (pool, call) = Burner("""
                        while resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(resource.RUSAGE_SELF).ru_stime <= 0.55:
                            pass
            """);
        await using var _ = pool;
        var before = await call(false);
        (await call(true)).ShouldBe(before);
        (await call(false)).ShouldNotBe(before);
    }

    [Fact]
    public async Task A_policy_that_runs_past_the_lifetime_cpu_cap_gets_a_504_naming_the_cpu_limit_and_the_next_call_works()
    {
        var (pool, call) = Burner("""
                        while True:
                            pass
            """);
        await using var _ = pool;
        var before = await call(false);

        // The deadline (30 s) is far off: the lifetime cap (1 s of CPU) stops it, as SIGXCPU rather than SIGKILL.
        var error = await Should.ThrowAsync<PolicyGridException>(() => call(true));
        error.Status.ShouldBe(504);
        error.Message.ShouldContain("CPU time limit (SIGXCPU)");
        (await call(false)).ShouldNotBe(before);
    }
}

public sealed class WorkerUidTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Lock names of this test run only, so the tests neither meet real pools nor each other.
    private static string TestNames() => "policygrid-test/worker-uid/" + Guid.NewGuid().ToString("N") + "/";

    [Fact]
    public void A_lease_skips_uids_the_host_uses_and_uids_another_lease_holds_until_it_is_released()
    {
        var names = TestNames();
        using (var first = WorkerUidLease.Reserve(3, 5000, uid => uid is 5001 or 5003, names))
        {
            first.Uids.ShouldBe([5000, 5002, 5004]);
            using var second = WorkerUidLease.Reserve(2, 5000, _ => false, names);
            second.Uids.ShouldBe([5001, 5003]);
        }
        using var after = WorkerUidLease.Reserve(1, 5000, _ => false, names);
        after.Uids.ShouldBe([5000]);
    }

    [Fact]
    public void A_range_with_too_few_free_uids_is_refused_naming_the_setting_and_holds_nothing()
    {
        var names = TestNames();
        var error = Should.Throw<InvalidOperationException>(() => WorkerUidLease.Reserve(2, 7000, uid => uid != 7010, names));
        error.Message.ShouldContain("found 1 of the 2 free uids");
        error.Message.ShouldContain("WorkerUidStart");
        using var lease = WorkerUidLease.Reserve(1, 7010, _ => false, names);
        lease.Uids.ShouldBe([7010]);
    }

    [Fact]
    public void The_host_check_sees_accounts_and_running_processes()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("reads /proc and the Linux account database");
        var used = WorkerUidLease.UsedOnHost();
        used(0).ShouldBeTrue(); // root: an account, and this process
        used(65534).ShouldBeTrue(); // nobody
        used(0x70000000 + 4321).ShouldBeFalse();
    }

    [Fact]
    public async Task By_default_every_worker_has_a_uid_of_its_own_so_a_policy_killing_every_process_it_may_signal_harms_no_other_worker()
    {
        if (Environment.UserName != "root") Assert.Skip("needs root: only root can switch workers to other uids");
        await using var pool = PoolFixture.NewPool(workers: 2);
        await using var other = PoolFixture.NewPool(workers: 1);
        var bundle = TestBundles.FromSource("""
            import os, signal

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    if input_data.get("kill_everything"):
                        os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except this one
                    return {"uid": os.getuid(), "pid": os.getpid()}
            """);
        Task<JsonObject> Call(PythonWorkerPool on, string key, JsonObject input) => PoolFixture.EvalAsync(on, "uids:2-a", bundle, input, key);

        var a = await Call(pool, "a", []);
        var b = await Call(pool, "b", []);
        var c = await Call(other, "c", []);
        int[] uids = [a["uid"]!.GetValue<int>(), b["uid"]!.GetValue<int>(), c["uid"]!.GetValue<int>()];
        uids.Distinct().Count().ShouldBe(3);
        uids.ShouldAllBe(uid => uid >= new WorkerPoolOptions().WorkerUidStart);

        await Call(pool, "a", new JsonObject { ["kill_everything"] = true });

        // The same processes answer: nothing outside the killer's own uid was hit.
        (await Call(pool, "b", []))["pid"]!.GetValue<int>().ShouldBe(b["pid"]!.GetValue<int>());
        (await Call(other, "c", []))["pid"]!.GetValue<int>().ShouldBe(c["pid"]!.GetValue<int>());
        (await Call(pool, "a", []))["pid"]!.GetValue<int>().ShouldBe(a["pid"]!.GetValue<int>());
    }

    [Fact]
    public async Task With_a_uid_base_and_a_group_per_policy_two_policies_never_get_the_same_uids()
    {
        if (Environment.UserName != "root") Assert.Skip("needs root: only root can switch workers to other uids");
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.WorkerUidBase = 62000);
        var bundle = TestBundles.FromSource("""
            import os

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    return {"uid": os.getuid()}
            """);
        async Task<int> Uid(string uri) => (await PoolFixture.EvalAsync(pool, uri, bundle))["uid"]!.GetValue<int>();

        var first = await Uid("one:1.0-a");
        var second = await Uid("two:1.0-a");
        first.ShouldBeGreaterThanOrEqualTo(62000);
        second.ShouldBeGreaterThanOrEqualTo(62000);
        second.ShouldNotBe(first);
    }

    [Fact]
    public async Task With_separate_users_off_every_worker_runs_as_the_shared_user()
    {
        if (Environment.UserName != "root") Assert.Skip("needs root: only root can switch workers to other uids");
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.SeparateWorkerUsers = false);
        await pool.StartAsync(Ct);
        pool.Status.WorkerUid.ShouldBe(65534);
    }

    [Fact]
    public async Task With_a_uid_base_each_worker_has_its_own_user_and_cannot_read_the_others_temp_dir()
    {
        if (Environment.UserName != "root") Assert.Skip("needs root: only root can switch workers to other uids");
        var options = PoolFixture.TestOptions(workers: 2);
        options.WorkerUidBase = 61000;
        await using var pool = new PythonWorkerPool(options, new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());
        var bundle = TestBundles.FromSource("""
            import os

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    other = input_data.get("other_tmp")
                    if other:
                        try:
                            os.listdir(other)
                            return {"other": "listed"}
                        except OSError as exc:
                            return {"other": type(exc).__name__}
                    return {"uid": os.getuid(), "tmp": os.environ["TMPDIR"]}
            """);
        async Task<JsonObject> Call(string key, JsonObject input) => (await pool.InvokeAsync(new PolicyInvocation(key, new PolicyLoadSpec("uids:1-a", bundle, [], []),
            PolicyMethods.Eval, new JsonObject { ["parameters"] = new JsonObject(), ["input_data"] = input, ["context"] = new JsonObject() }, TimeSpan.FromSeconds(5)), Ct))!["result"]!.AsObject();

        var first = await Call("a", []);
        var second = await Call("b", []);
        new[] { first["uid"]!.GetValue<int>(), second["uid"]!.GetValue<int>() }.Order().ShouldBe([61000, 61001]);
        // Not there at all where each worker's /tmp is its own (PrivateTemp), not readable where it is the host's.
        (await Call("a", new JsonObject { ["other_tmp"] = second["tmp"]!.GetValue<string>() }))["other"]!.GetValue<string>().ShouldBeOneOf("PermissionError", "FileNotFoundError");
    }
}

public sealed class WorkDirectoryTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Each_pool_makes_a_new_directory_of_its_own_removes_it_when_it_stops_and_runs_no_host_script_from_disk()
    {
        if (OperatingSystem.IsWindows())
        {
            Assert.Skip("POSIX modes");
            return;
        }
        var parent = Path.Combine(TestBundles.Root, "workdir-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(parent);
        // World-writable and not sticky, like an emptyDir volume, with what another user could have planted there.
        File.SetUnixFileMode(parent, (UnixFileMode)0b111_111_111);
        var marker = Path.Combine(parent, "planted-ran");
        var planted = $"open({System.Text.Json.JsonSerializer.Serialize(marker)}, 'w').close()\n";
        File.WriteAllText(Path.Combine(parent, "policy_host.py"), planted);
        Directory.CreateDirectory(Path.Combine(parent, "policygrid-workers"));
        File.WriteAllText(Path.Combine(parent, "policygrid-workers", "policy_host.py"), planted);

        var options = PoolFixture.TestOptions(workers: 1);
        options.WorkDirectory = parent;
        var first = new PythonWorkerPool(options, new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());
        await using var second = new PythonWorkerPool(options, new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());
        await first.StartAsync(Ct);
        await second.StartAsync(Ct);

        // Sticky now: nobody but the owner can rename or remove the pools' directories in it.
        File.GetUnixFileMode(parent).ShouldBe((UnixFileMode)0b111_111_111 | UnixFileMode.StickyBit);
        var made = Directory.GetDirectories(parent, "policygrid-workers-*");
        made.Length.ShouldBe(2);
        foreach (var dir in made)
        {
            Path.GetFileName(dir).Length.ShouldBe("policygrid-workers-".Length + 32);
            File.GetUnixFileMode(dir).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
            Directory.GetFiles(dir).ShouldBeEmpty(); // the host script came over the pipe
        }
        File.Exists(marker).ShouldBeFalse();

        await first.DisposeAsync();
        Directory.GetDirectories(parent, "policygrid-workers-*").Length.ShouldBe(1);
    }
}
