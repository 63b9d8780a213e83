using System.Formats.Tar;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;

namespace PolicyGrid.Sdk.Tests;

public sealed class BundleUnpackerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pg-sdk-unpack-").FullName;
    private string Target => Path.Combine(_dir, "bundle");
    private string Outside => Path.Combine(_dir, "outside");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private PolicyGridApiException Refused(byte[] data, string words, UnpackLimits? limits = null)
    {
        Directory.CreateDirectory(Target);
        var e = Should.Throw<PolicyGridApiException>(() => BundleUnpacker.Unpack(data, Target, limits ?? UnpackLimits.Default));
        (e.Status, e.Code).ShouldBe((400, "bad_request"));
        e.Reason.ShouldContain(words);
        File.Exists(Outside).ShouldBeFalse();
        return e;
    }

    [Fact]
    public void Zip_and_tar_gz_unpack()
    {
        foreach (var data in new[] { TestBundles.AllowlistZip(), TestBundles.TarGz([TestBundles.File("code/function.py", TestBundles.IpAllowlist)]) })
        {
            var target = Path.Combine(_dir, Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(target);
            BundleUnpacker.Unpack(data, target, UnpackLimits.Default);
            File.ReadAllText(Path.Combine(target, "code", "function.py")).ShouldBe(TestBundles.IpAllowlist);
        }
    }

    [Fact]
    public void Not_an_archive() => Refused("just text"u8.ToArray(), "not a readable archive");

    [Fact]
    public void Zip_slip() => Refused(TestBundles.Zip(("code/function.py", ""), ("../outside", "x")), "'..'");

    [Fact]
    public void Absolute_path() => Refused(TestBundles.TarGz([TestBundles.File("/tmp/pg-abs", "x")]), "absolute path");

    [Fact]
    public void Tar_symlink_leading_out() =>
        Refused(TestBundles.TarGz([new PaxTarEntry(TarEntryType.SymbolicLink, "code/escape") { LinkName = "../../outside" }]), "leaves the bundle");

    [Fact]
    public void Tar_device_file() =>
        Refused(TestBundles.TarGz([new PaxTarEntry(TarEntryType.CharacterDevice, "code/null") { DeviceMajor = 1, DeviceMinor = 3 }]), "device");

    [Fact]
    public void Zip_bomb_is_stopped_by_the_ratio_cap()
    {
        var bomb = TestBundles.Zip(("code/function.py", ""), ("code/zeros", new string('\0', 20 << 20)));
        bomb.Length.ShouldBeLessThan(100_000);
        Refused(bomb, "unpacks to more than");
    }

    [Fact]
    public void Entry_count_cap() =>
        Refused(TestBundles.Zip([.. Enumerable.Range(0, 20).Select(i => ($"code/f{i}.py", ""))]), "more than 10 entries", new UnpackLimits(MaxEntries: 10));

    [Fact]
    public void In_tree_tar_link_stays_inside_and_reads_its_target()
    {
        Directory.CreateDirectory(Target);
        BundleUnpacker.Unpack(TestBundles.TarGz([TestBundles.File("code/helper.py", "X = 1\n"),
            new PaxTarEntry(TarEntryType.SymbolicLink, "code/alias.py") { LinkName = "helper.py" }]), Target, UnpackLimits.Default);
        var alias = new FileInfo(Path.Combine(Target, "code", "alias.py"));
        Path.GetFullPath(alias.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? alias.FullName).ShouldStartWith(Target);
        File.ReadAllText(alias.FullName).ShouldBe("X = 1\n");
    }

    [Fact]
    public async Task Tar_xz_unpacks_like_the_servers_do()
    {
        var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
            writer.WriteEntry(TestBundles.File("code/function.py", TestBundles.IpAllowlist));
        var xz = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("xz", "-z -c") { RedirectStandardInput = true, RedirectStandardOutput = true })!;
        var compressed = new MemoryStream();
        var copy = xz.StandardOutput.BaseStream.CopyToAsync(compressed, TestContext.Current.CancellationToken);
        await xz.StandardInput.BaseStream.WriteAsync(tar.ToArray(), TestContext.Current.CancellationToken);
        xz.StandardInput.Close();
        await copy;
        await xz.WaitForExitAsync(TestContext.Current.CancellationToken);
        Directory.CreateDirectory(Target);
        BundleUnpacker.Unpack(compressed.ToArray(), Target, UnpackLimits.Default);
        File.ReadAllText(Path.Combine(Target, "code", "function.py")).ShouldBe(TestBundles.IpAllowlist);
    }
}
