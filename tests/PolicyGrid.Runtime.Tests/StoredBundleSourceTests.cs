using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>Bundles uploaded to a real FileBundleStore, resolved, verified and unpacked, then run.</summary>
public sealed class StoredBundleSourceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Path.Combine(TestBundles.Root, "stored-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly FileBundleStore store;
    private readonly StoredBundleSource source;

    public StoredBundleSourceTests()
    {
        store = new FileBundleStore(Path.Combine(dir, "bundles"));
        source = new StoredBundleSource(store, new BundleSourceOptions { CacheDirectory = Path.Combine(dir, "unpacked"), MaxUnpackedBytes = 8L << 20 });
    }

    private static string SampleSource(string name) =>
        File.ReadAllText(Path.Combine(TestBundles.RepoRoot(), "samples", "policies", name, "code", "function.py"));

    private static byte[] Zip(params (string Name, byte[] Data, int UnixMode)[] entries)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, data, mode) in entries)
            {
                var entry = zip.CreateEntry(name, CompressionLevel.Optimal);
                if (mode != 0) entry.ExternalAttributes = mode << 16;
                using var s = entry.Open();
                s.Write(data);
            }
        }
        return buffer.ToArray();
    }

    private static byte[] TarGz(Action<TarWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var gzip = new GZipStream(buffer, CompressionLevel.Optimal, leaveOpen: true))
        using (var tar = new TarWriter(gzip, TarEntryFormat.Pax, leaveOpen: true))
            write(tar);
        return buffer.ToArray();
    }

    private static void AddFile(TarWriter tar, string name, string text) =>
        tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text)) });

    private async Task<string> Upload(byte[] archive) => (await store.PutAsync(archive, Ct)).Code;

    private async Task<PolicyGridException> Refused(byte[] archive)
    {
        var error = await Should.ThrowAsync<PolicyGridException>(async () => await source.GetAsync(await Upload(archive), Ct));
        error.Status.ShouldBe(400);
        return error;
    }

    [Fact]
    public async Task A_zip_bundle_runs_end_to_end_through_the_executor()
    {
        await using var harness = new ExecutorHarness();
        var zipped = Zip(("code/function.py", Encoding.UTF8.GetBytes(SampleSource("ip_allowlist")), 0));
        var manifest = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(TestBundles.RepoRoot(), "samples", "policies", "ip_allowlist", "manifest.json"), Ct))!.AsObject();
        manifest["code"] = await Upload(zipped);
        var rule = PolicyRule.FromJson(manifest);
        var bundle = await source.GetAsync(rule.Code, Ct);
        File.Exists(Path.Combine(bundle.Root, "code", "function.py")).ShouldBeTrue();
        // The worker user must be able to read what was unpacked.
        if (!OperatingSystem.IsWindows()) File.GetUnixFileMode(Path.Combine(bundle.Root, "code", "function.py")).HasFlag(UnixFileMode.OtherRead).ShouldBeTrue();

        harness.Bundles.Add(bundle);
        await harness.Documents.CreateAsync(Collections.Policies, rule.PolicyRuleUri, rule.ToJson(), Ct);
        var result = await harness.Executor.ExecuteAsync(new ExecutionRequest(rule.PolicyRuleUri, new JsonObject { ["ip"] = "10.0.0.1" }), CallerIdentity.Anonymous, Ct);
        result.Output["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Tar_gz_and_tar_xz_bundles_unpack_and_the_same_hash_is_unpacked_once()
    {
        var tgz = TarGz(tar => AddFile(tar, "code/function.py", SampleSource("rate_limiter")));
        var code = await Upload(tgz);
        var first = await source.GetAsync(code, Ct);
        File.ReadAllText(Path.Combine(first.Root, "code", "function.py")).ShouldContain("rate_limiter");
        var again = await source.GetAsync(code, Ct);
        again.Root.ShouldBe(first.Root);

        // This server's own download URL for the same bytes resolves to the same bundle.
        var byUrl = await source.GetAsync($"http://localhost:8080/bundles/sha256/{first.Sha256}", Ct);
        byUrl.Root.ShouldBe(first.Root);

        if (File.Exists("/usr/bin/xz"))
        {
            var tarBytes = TarBytes(tar => AddFile(tar, "code/function.py", SampleSource("config_validator")));
            var xz = Xz(tarBytes);
            var fromXz = await source.GetAsync(await Upload(xz), Ct);
            File.ReadAllText(Path.Combine(fromXz.Root, "code", "function.py")).ShouldContain("config_validator");
        }
    }

    private static byte[] TarBytes(Action<TarWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var tar = new TarWriter(buffer, TarEntryFormat.Pax, leaveOpen: true)) write(tar);
        return buffer.ToArray();
    }

    private static byte[] Xz(byte[] data)
    {
        var start = new ProcessStartInfo("/usr/bin/xz") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add("--compress");
        start.ArgumentList.Add("--stdout");
        using var process = Process.Start(start)!;
        var feed = Task.Run(() => { process.StandardInput.BaseStream.Write(data); process.StandardInput.Close(); });
        using var output = new MemoryStream();
        process.StandardOutput.BaseStream.CopyTo(output);
        feed.Wait();
        process.WaitForExit();
        return output.ToArray();
    }

    [Fact]
    public async Task Zip_slip_is_refused()
    {
        var error = await Refused(Zip(("code/../../evil.py", "x"u8.ToArray(), 0)));
        error.Message.ShouldContain("'..'");
        Directory.Exists(Path.Combine(dir, "evil.py")).ShouldBeFalse();
    }

    [Fact]
    public async Task Absolute_paths_are_refused()
    {
        var error = await Refused(TarGz(tar => AddFile(tar, "/tmp/planted.py", "x")));
        error.Message.ShouldContain("absolute path");
    }

    [Fact]
    public async Task Links_are_refused_in_zip_and_tar()
    {
        var zipLink = await Refused(Zip(("code/function.py", "/etc/passwd"u8.ToArray(), 0xA1FF)));
        zipLink.Message.ShouldContain("symbolic link");
        var tarLink = await Refused(TarGz(tar => tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "code/function.py") { LinkName = "/etc/passwd" })));
        tarLink.Message.ShouldContain("link to '/etc/passwd'");
    }

    [Fact]
    public async Task Device_files_are_refused()
    {
        var error = await Refused(TarGz(tar => tar.WriteEntry(new PaxTarEntry(TarEntryType.CharacterDevice, "code/null") { DeviceMajor = 1, DeviceMinor = 3 })));
        error.Message.ShouldContain("CharacterDevice");
    }

    [Fact]
    public async Task A_zip_bomb_is_refused()
    {
        var error = await Refused(Zip(("code/function.py", new byte[64 << 20], 0)));
        error.Message.ShouldMatch(".*(decompression bomb|more than).*");
    }

    [Fact]
    public async Task Something_that_is_not_an_archive_is_refused()
    {
        var error = await Refused("just some text, not an archive"u8.ToArray());
        error.Message.ShouldContain("not a .zip, .tar.gz or .tar.xz");
        var brokenZip = await Refused([0x50, 0x4B, 0x03, 0x04, 1, 2, 3]);
        brokenZip.Message.ShouldContain("zip");
    }

    [Fact]
    public async Task Unknown_bundles_and_foreign_urls_are_400_naming_code()
    {
        var missing = await Should.ThrowAsync<PolicyGridException>(() => source.GetAsync("bundle://sha256/" + new string('a', 64), Ct));
        missing.Status.ShouldBe(400);
        missing.Message.ShouldContain("code");
        var foreign = await Should.ThrowAsync<PolicyGridException>(() => source.GetAsync("https://example.com/policy.zip", Ct));
        foreign.Status.ShouldBe(400);
        foreign.Message.ShouldContain("example.com/policy.zip");
    }
}

public sealed class BundleRequirementsTests : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Path.Combine(TestBundles.Root, "reqs-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly PythonWorkerPool pool = new(PoolFixture.TestOptions(workers: 1), new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());

    private StoredBundleSource Source(FileBundleStore store, string wheels)
    {
        var options = new BundleSourceOptions
        {
            CacheDirectory = Path.Combine(dir, "unpacked"),
            PipOptions = ["--only-binary", ":all:", "--no-index", "--find-links", wheels],
        };
        return new StoredBundleSource(store, options, new RequirementsInstaller(pool, options));
    }

    private static byte[] Bundle(string requirements, string functionPy)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, text) in new[] { ("code/requirements.txt", requirements), ("code/function.py", functionPy) })
            {
                using var s = zip.CreateEntry(name).Open();
                s.Write(Encoding.UTF8.GetBytes(text));
            }
        }
        return buffer.ToArray();
    }

    // A pure-Python wheel is a zip with a dist-info folder: enough for pip, no build step needed.
    private static string WheelDirectory(string root)
    {
        Directory.CreateDirectory(root);
        using var file = File.Create(Path.Combine(root, "demo_helper-1.0-py3-none-any.whl"));
        using var zip = new ZipArchive(file, ZipArchiveMode.Create);
        foreach (var (name, text) in new[]
        {
            ("demo_helper/__init__.py", "GREETING = 'hello from a wheel'\n"),
            ("demo_helper-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo-helper\nVersion: 1.0\n"),
            ("demo_helper-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: policygrid-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
            ("demo_helper-1.0.dist-info/RECORD", "demo_helper/__init__.py,,\ndemo_helper-1.0.dist-info/METADATA,,\ndemo_helper-1.0.dist-info/WHEEL,,\ndemo_helper-1.0.dist-info/RECORD,,\n"),
        })
        {
            using var s = zip.CreateEntry(name).Open();
            s.Write(Encoding.UTF8.GetBytes(text));
        }
        return root;
    }

    private const string UsesHelper = """
        import demo_helper

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                return {"greeting": demo_helper.GREETING}
        """;

    [Fact]
    public async Task Requirements_install_into_the_bundle_and_the_policy_imports_them()
    {
        var store = new FileBundleStore(Path.Combine(dir, "bundles"));
        var source = Source(store, WheelDirectory(Path.Combine(dir, "wheels")));
        var code = (await store.PutAsync(Bundle("demo-helper==1.0\n", UsesHelper), Ct)).Code;
        var bundle = await source.GetAsync(code, Ct);
        bundle.SitePackages.ShouldNotBeNull();
        var reply = await pool.InvokeAsync(new PolicyInvocation("helper", new PolicyLoadSpec("helper:1-a", bundle, [], []), PolicyMethods.Eval,
            new JsonObject { ["parameters"] = new JsonObject(), ["input_data"] = new JsonObject(), ["context"] = new JsonObject() }, TimeSpan.FromSeconds(5)), Ct);
        reply!["result"]!["greeting"]!.GetValue<string>().ShouldBe("hello from a wheel");
    }

    [Fact]
    public async Task A_requirement_that_cannot_be_installed_is_400_naming_it()
    {
        var store = new FileBundleStore(Path.Combine(dir, "bundles"));
        var source = Source(store, WheelDirectory(Path.Combine(dir, "wheels")));
        var code = (await store.PutAsync(Bundle("# needs a package nobody has\nno-such-package-xyz==9.9\n", UsesHelper), Ct)).Code;
        var error = await Should.ThrowAsync<PolicyGridException>(() => source.GetAsync(code, Ct));
        error.Status.ShouldBe(400);
        error.Message.ShouldContain("no-such-package-xyz");
        error.Message.ShouldContain("requirements.txt");
        Directory.EnumerateFileSystemEntries(Path.Combine(dir, "unpacked")).ShouldBeEmpty(); // nothing half-installed is kept
    }

    public async ValueTask DisposeAsync() => await pool.DisposeAsync();
}
