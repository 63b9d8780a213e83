using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// A bundle cache on a file system of its own mounted under /var/tmp or /tmp (a volume for the cache, or
/// PolicyGrid:Runtime:Bundles:CacheDirectory pointed at one): a worker with a private /var/tmp saw the host's /var/tmp
/// through a bind that did not carry that mount, so every policy failed to load ("the bundle has no code/function.py",
/// a 400 blaming the policy at create). The worker sees it now, read-only like the rest of the host's view.
/// Each test runs both ways the worker makes its views of the host's temp dirs: a clone of their mount trees (Linux 5.12
/// and later), and the binds older kernels and seccomp profiles that refuse the new mount calls get
/// (<see cref="WorkerPoolOptions.BindHostViews"/>), which this kernel would otherwise never run.
/// </summary>
public sealed class MountedBundleCacheTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Writes, reads and reports the per-mount options of the paths it is given, as the worker sees them.
    private const string Probe = """
        import os

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                out = {"write": {}, "read": {}, "options": {}}
                for path in input_data.get("write", []):
                    try:
                        with open(path, "w") as f:
                            f.write("planted")
                        out["write"][path] = "written"
                    except OSError as e:
                        out["write"][path] = e.strerror
                for path in input_data.get("read", []):
                    try:
                        with open(path) as f:
                            out["read"][path] = f.read()
                    except OSError as e:
                        out["read"][path] = e.strerror
                table = {}
                with open("/proc/self/mountinfo") as f:
                    for line in f:
                        fields = line.split()
                        table[fields[4].replace("\\040", " ")] = fields[5]
                for path in input_data.get("options", []):
                    out["options"][path] = table.get(path, "not a mount point")
                return out
        """;

    [Theory]
    [InlineData(false, "/var/tmp")]
    [InlineData(true, "/var/tmp")]
    [InlineData(false, "/tmp")]
    [InlineData(true, "/tmp")]
    [InlineData(false, "/tmp/pg cache with spaces")]
    [InlineData(true, "/tmp/pg cache with spaces")]
    public async Task A_policy_loads_from_a_cache_on_its_own_mount_and_can_write_neither_there_nor_to_a_mount_inside_it(bool bindViews, string under)
    {
        if (!ProcessSignals.IsRoot) Assert.Skip("workers get mounts of their own only under a root server");
        var made = !Directory.Exists(under);
        if (made) Directory.CreateDirectory(under);
        try
        {
            using var disk = SmallDisk.Mount(1 << 20, under);
            using var inner = SmallDisk.Mount(1 << 20, under: disk.Path, options: "noexec");
            File.WriteAllText(Path.Combine(inner.Path, "data.txt"), "the host's data");
            var bundle = ProbeBundle(disk.Path);
            await using var pool = PoolFixture.NewPool(workers: 1, o => o.BindHostViews = bindViews);

            var result = await PoolFixture.EvalAsync(pool, "mounted:1.0-test", bundle, Input(
                write: [View(Path.Combine(bundle.Root, "code", "planted.py")), View(Path.Combine(inner.Path, "planted"))],
                read: [View(Path.Combine(inner.Path, "data.txt"))],
                options: [View(disk.Path), View(inner.Path)]));

            pool.Status.PrivateTemp.ShouldBeTrue();
            pool.Status.HostViews.ShouldBe(bindViews ? "bind" : "clone");
            result["write"]!.AsObject().Select(p => p.Value!.GetValue<string>()).ShouldAllBe(v => v == "Read-only file system");
            result["read"]![View(Path.Combine(inner.Path, "data.txt"))]!.GetValue<string>().ShouldBe("the host's data");
            Options(result, View(disk.Path)).ShouldBe(["ro", "nosuid", "nodev"], ignoreOrder: true);
            Options(result, View(inner.Path)).ShouldBe(["ro", "nosuid", "nodev", "noexec"], ignoreOrder: true); // noexec kept
            File.Exists(Path.Combine(bundle.Root, "code", "planted.py")).ShouldBeFalse();
            File.Exists(Path.Combine(inner.Path, "planted")).ShouldBeFalse();
        }
        finally
        {
            if (made) Directory.Delete(under);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_file_system_the_host_mounts_in_its_temp_dirs_after_a_worker_started_is_not_writable_through_the_view(bool bindViews)
    {
        // Each view was a slave of the host's mounts: a file system mounted under /var/tmp after the worker started
        // showed up in the view as the host mounted it, writable, so what a policy wrote there reached the host.
        // Mounts propagate from shared ones (/ is shared on a systemd host): the cache's own mount is made shared here.
        if (!ProcessSignals.IsRoot) Assert.Skip("workers get mounts of their own only under a root server");
        using var disk = SmallDisk.Mount(1 << 20, "/var/tmp");
        if (SmallDisk.Run("mount", "--make-shared", disk.Path) is { } refused) Assert.Skip(refused);
        var bundle = ProbeBundle(disk.Path);
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.BindHostViews = bindViews);
        await PoolFixture.EvalAsync(pool, "late-mount:1.0-test", bundle, Input());
        pool.Status.HostViews.ShouldBe(bindViews ? "bind" : "clone");

        using var late = SmallDisk.Mount(1 << 20, disk.Path, options: "mode=1777");
        var planted = Path.Combine(late.Path, "planted");
        var result = await PoolFixture.EvalAsync(pool, "late-mount:1.0-test", bundle, Input(write: [View(planted)]));

        result["write"]![View(planted)]!.GetValue<string>().ShouldBe("Read-only file system");
        File.Exists(planted).ShouldBeFalse();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_file_bound_on_a_file_in_tmp_shows_read_only_in_the_view_and_the_host_tmp_only_there(bool bindViews)
    {
        // A container runtime's volume of one file (docker run -v /host/file:/tmp/file) is a mount inside /tmp too: the
        // binds opened each such mount as a directory, so with one every worker failed to start ("NotADirectoryError").
        if (!ProcessSignals.IsRoot) Assert.Skip("workers get mounts of their own only under a root server");
        using var disk = SmallDisk.Mount(1 << 20, "/var/tmp");
        var bundle = ProbeBundle(disk.Path);
        var source = Path.Combine(disk.Path, "source.txt");
        File.WriteAllText(source, "one file of the host's");
        var file = Path.Combine("/tmp", "pg-file-mount-" + Guid.NewGuid().ToString("N")[..8]);
        File.WriteAllText(file, "");
        try
        {
            if (SmallDisk.Run("mount", "--bind", source, file) is { } refused) Assert.Skip(refused);
            try
            {
                await using var pool = PoolFixture.NewPool(workers: 1, o => o.BindHostViews = bindViews);
                var result = await PoolFixture.EvalAsync(pool, "file-mount:1.0-test", bundle,
                    Input(write: [View(file)], read: [View(file), file], options: [View(file)]));

                pool.Status.HostViews.ShouldBe(bindViews ? "bind" : "clone");
                result["read"]![View(file)]!.GetValue<string>().ShouldBe("one file of the host's");
                result["read"]![file]!.GetValue<string>().ShouldBe("No such file or directory"); // the worker's /tmp is its own
                result["write"]![View(file)]!.GetValue<string>().ShouldBe("Read-only file system");
                Options(result, View(file)).ShouldBe(["ro", "nosuid", "nodev"], ignoreOrder: true);
                File.ReadAllText(source).ShouldBe("one file of the host's");
            }
            finally
            {
                _ = SmallDisk.Run("umount", "-l", file);
            }
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_view_of_a_temp_dir_mounted_noexec_stays_noexec(bool bindViews)
    {
        // The binds remounted each temp dir's view read-only without MS_NOEXEC, which lifts it: a host whose /dev/shm or
        // /tmp is mounted noexec (a container runtime's /dev/shm is) showed it executable to policies.
        if (!ProcessSignals.IsRoot) Assert.Skip("workers get mounts of their own only under a root server");
        using var disk = SmallDisk.Mount(1 << 20, "/var/tmp");
        var bundle = ProbeBundle(disk.Path);
        // The real interpreter, started in a mount namespace of its own where /dev/shm is noexec: the host stays as it is.
        var wrapper = WrappedPython.Create(disk.Path, "python-with-noexec-shm",
            "exec unshare -m sh -c 'mount -o remount,bind,noexec /dev/shm && exec \"$0\" \"$@\"' PYTHON \"$@\"", out var whyNot) ?? throw Skip(whyNot);
        await using var pool = PoolFixture.NewPool(workers: 1, o =>
        {
            o.BindHostViews = bindViews;
            o.PythonExecutable = o.FallbackPythonExecutable = wrapper;
        });

        var result = await PoolFixture.EvalAsync(pool, "noexec:1.0-test", bundle, Input(options: ["/tmp/.policygrid-host/dev_shm"]));

        pool.Status.Interpreter.ShouldBe(wrapper);
        pool.Status.HostViews.ShouldBe(bindViews ? "bind" : "clone");
        Options(result, "/tmp/.policygrid-host/dev_shm").ShouldBe(["ro", "nosuid", "nodev", "noexec"], ignoreOrder: true);
    }

    [Fact]
    public async Task Where_seccomp_refuses_open_tree_and_mount_setattr_the_worker_takes_the_binds_by_itself()
    {
        // What some container runtimes' seccomp profiles do (EPERM), and what a kernel before 5.12 answers (ENOSYS).
        if (!ProcessSignals.IsRoot) Assert.Skip("workers get mounts of their own only under a root server");
        using var disk = SmallDisk.Mount(1 << 20, "/var/tmp");
        using var inner = SmallDisk.Mount(1 << 20, under: disk.Path, options: "noexec");
        var bundle = ProbeBundle(disk.Path);
        var python = WrappedPython.RefusingMounts(disk.Path, refuseBinds: false, out var whyNot) ?? throw Skip(whyNot);
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.PythonExecutable = o.FallbackPythonExecutable = python);

        var result = await PoolFixture.EvalAsync(pool, "seccomp:1.0-test", bundle, Input(
            write: [View(Path.Combine(bundle.Root, "code", "planted.py")), View(Path.Combine(inner.Path, "planted"))],
            options: [View(disk.Path), View(inner.Path)]));

        pool.Status.Interpreter.ShouldBe(python);
        pool.Status.HostViews.ShouldBe("bind");
        result["write"]!.AsObject().Select(p => p.Value!.GetValue<string>()).ShouldAllBe(v => v == "Read-only file system");
        Options(result, View(disk.Path)).ShouldBe(["ro", "nosuid", "nodev"], ignoreOrder: true);
        Options(result, View(inner.Path)).ShouldBe(["ro", "nosuid", "nodev", "noexec"], ignoreOrder: true);
    }

    [Fact]
    public async Task When_the_binds_are_refused_too_the_call_fails_at_once_naming_private_temp_not_the_interpreter()
    {
        // Was a 503 "No usable Python interpreter for policy workers: ... RuntimeError: binding ...: Operation not
        // permitted ... Set PolicyGrid:Runtime:Pool:PythonExecutable to an interpreter the worker user can read", after
        // trying the fallback interpreter: the operator was sent to fix the wrong setting.
        if (!ProcessSignals.IsRoot) Assert.Skip("workers get mounts of their own only under a root server");
        using var disk = SmallDisk.Mount(1 << 20, "/var/tmp");
        var bundle = ProbeBundle(disk.Path);
        var python = WrappedPython.RefusingMounts(disk.Path, refuseBinds: true, out var whyNot) ?? throw Skip(whyNot);
        await using var pool = PoolFixture.NewPool(workers: 1, o => o.PythonExecutable = o.FallbackPythonExecutable = python);

        var error = await Should.ThrowAsync<PolicyGrid.Core.Errors.PolicyGridException>(
            () => PoolFixture.EvalAsync(pool, "refused:1.0-test", bundle, Input()).WaitAsync(TimeSpan.FromSeconds(60), Ct));

        error.Status.ShouldBe(503);
        error.Message.ShouldContain("PolicyGrid:Runtime:Pool:PrivateTemp");
        error.Message.ShouldContain("Operation not permitted");
        error.Message.ShouldNotContain("interpreter");
    }

    [Fact]
    public async Task In_a_user_namespace_the_binds_show_a_cache_on_its_own_mount()
    {
        // A rootless container: the host's mounts are locked in its user namespace, where the kernel refuses a bind of a
        // directory without the mounts inside it. The binds did just that, so with a cache (or any mount) under /var/tmp
        // or /tmp no worker could start there ("binding the host's /var/tmp: Invalid argument") on a kernel before 5.12.
        if (!ProcessSignals.IsRoot) Assert.Skip("workers get mounts of their own only under a root server");
        using var disk = SmallDisk.Mount(1 << 20, "/var/tmp");
        using var inner = SmallDisk.Mount(1 << 20, under: disk.Path, options: "noexec");
        var bundle = ProbeBundle(disk.Path);
        // Root of a user namespace of its own (only uid 0 mapped, so the worker stays root there).
        var python = WrappedPython.Create(disk.Path, "python-in-a-user-namespace", "exec unshare -U -m -r PYTHON \"$@\"", out var whyNot)
            ?? throw Skip(whyNot);
        await using var pool = PoolFixture.NewPool(workers: 1, o =>
        {
            o.BindHostViews = true;
            o.PythonExecutable = o.FallbackPythonExecutable = python;
            o.RunAsUser = "";
        });

        var result = await PoolFixture.EvalAsync(pool, "userns:1.0-test", bundle, Input(
            write: [View(Path.Combine(bundle.Root, "code", "planted.py")), View(Path.Combine(inner.Path, "planted"))],
            options: [View(disk.Path), View(inner.Path)]));

        pool.Status.HostViews.ShouldBe("bind");
        result["write"]!.AsObject().Select(p => p.Value!.GetValue<string>()).ShouldAllBe(v => v == "Read-only file system");
        Options(result, View(disk.Path)).ShouldBe(["ro", "nosuid", "nodev"], ignoreOrder: true);
        Options(result, View(inner.Path)).ShouldBe(["ro", "nosuid", "nodev", "noexec"], ignoreOrder: true);
    }

    private static Exception Skip(string? why)
    {
        Assert.Skip(why ?? "cannot run here");
        return new InvalidOperationException();
    }

    /// <summary>Where a worker with private temp dirs sees the host's <paramref name="path"/> (policy_host.py's _host_path).</summary>
    private static string View(string path) =>
        path.StartsWith("/var/tmp/", StringComparison.Ordinal) ? "/tmp/.policygrid-host/var_tmp" + path["/var/tmp".Length..]
        : path.StartsWith("/tmp/", StringComparison.Ordinal) ? "/tmp/.policygrid-host/tmp" + path["/tmp".Length..]
        : throw new ArgumentException($"{path} is in no temp dir a worker covers");

    private static BundleDirectory ProbeBundle(string under)
    {
        var root = Path.Combine(under, "bundle");
        Directory.CreateDirectory(Path.Combine(root, "code"));
        File.WriteAllText(Path.Combine(root, "code", "function.py"), Probe);
        return new BundleDirectory(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(root))), root, null);
    }

    private static JsonObject Input(string[]? write = null, string[]? read = null, string[]? options = null) => new()
    {
        ["write"] = new JsonArray([.. (write ?? []).Select(p => JsonValue.Create(p))]),
        ["read"] = new JsonArray([.. (read ?? []).Select(p => JsonValue.Create(p))]),
        ["options"] = new JsonArray([.. (options ?? []).Select(p => JsonValue.Create(p))]),
    };

    /// <summary>The flags that matter of the mount at <paramref name="view"/> as the probe saw it.</summary>
    private static string[] Options(JsonObject result, string view) =>
        [.. result["options"]![view]!.GetValue<string>().Split(',').Where(o => o is "ro" or "rw" or "nosuid" or "nodev" or "noexec")];
}
