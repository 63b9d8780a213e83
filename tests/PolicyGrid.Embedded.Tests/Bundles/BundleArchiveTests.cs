using System.Formats.Tar;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Bundles;
using Shouldly;
using static PolicyGrid.Embedded.Tests.Bundles.TestArchives;

namespace PolicyGrid.Embedded.Tests.Bundles;

public sealed class BundleArchiveTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Target => _dir.File("out");

    private static void ShouldBeRefused(byte[] archive, string messagePart, ArchiveLimits? limits = null, string? target = null)
    {
        var e = Should.Throw<PolicyGridException>(() => BundleArchive.Validate(archive, limits ?? new ArchiveLimits()));
        e.Status.ShouldBe(400);
        e.Code.ShouldBe("bad_request");
        e.Message.ShouldContain(messagePart, Case.Insensitive);
        if (target is not null)
        {
            Should.Throw<PolicyGridException>(() => BundleArchive.Unpack(archive, target, limits ?? new ArchiveLimits())).Message.ShouldContain(messagePart, Case.Insensitive);
        }
    }

    [Fact]
    public void Zip_tar_gz_and_tar_xz_unpack_with_readable_modes()
    {
        var archives = new[]
        {
            Zip(("code/function.py", FunctionPy), ("code/data/rules.json", "{}")),
            TarGz(Dir("code"), File("code/function.py", FunctionPy), File("code/run.sh", "#!/bin/sh\n", UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute), Symlink("code/alias.py", "function.py"), HardLink("code/copy.py", "code/function.py")),
            TarXz(File("./code/function.py", FunctionPy)),
        };
        foreach (var (archive, i) in archives.Select((a, i) => (a, i)))
        {
            var target = Path.Combine(Target, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var summary = BundleArchive.Unpack(archive, target, new ArchiveLimits());
            summary.Kind.ShouldBe(new[] { BundleArchiveKind.Zip, BundleArchiveKind.TarGz, BundleArchiveKind.TarXz }[i]);
            var function = Path.Combine(target, "code", "function.py");
            System.IO.File.ReadAllText(function).ShouldBe(FunctionPy);
            System.IO.File.GetUnixFileMode(function).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            System.IO.File.GetUnixFileMode(Path.Combine(target, "code")).HasFlag(UnixFileMode.OtherRead | UnixFileMode.OtherExecute).ShouldBeTrue();
        }
        var tar = Path.Combine(Target, "1", "code");
        System.IO.File.GetUnixFileMode(Path.Combine(tar, "run.sh")).HasFlag(UnixFileMode.OtherExecute).ShouldBeTrue();
        System.IO.File.ReadAllText(Path.Combine(tar, "alias.py")).ShouldBe(FunctionPy);
        new FileInfo(Path.Combine(tar, "alias.py")).LinkTarget.ShouldBe("function.py");
        System.IO.File.ReadAllText(Path.Combine(tar, "copy.py")).ShouldBe(FunctionPy);
        BundleArchive.Validate(archives[2]).Entries.ShouldBe(1);
    }

    [Fact]
    public void Bytes_that_are_not_an_archive_are_a_400()
    {
        ShouldBeRefused("just some text, not an archive"u8.ToArray(), "not a readable archive");
        ShouldBeRefused([], "not a readable archive");
        ShouldBeRefused([.. "PK\x03\x04"u8, .. new byte[200]], "not a readable archive");
        ShouldBeRefused([0x1F, 0x8B, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8], "not a readable archive");
        ShouldBeRefused([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9], "not a readable archive");
    }

    [Fact]
    public void Zip_slip_and_absolute_paths_are_refused_and_nothing_lands_outside()
    {
        ShouldBeRefused(Zip(("code/function.py", FunctionPy), ("../evil.py", "x")), "..", target: Target);
        ShouldBeRefused(Zip(("code/../../evil.py", "x")), "..");
        ShouldBeRefused(TarGz(File("../../evil.py", "x")), "..", target: Target);
        ShouldBeRefused(TarGz(File("/etc/evil.py", "x")), "absolute");
        ShouldBeRefused(Zip(("/tmp/evil.py", "x")), "absolute");
        System.IO.File.Exists(_dir.File("evil.py")).ShouldBeFalse();
        System.IO.File.Exists(Path.Combine(Path.GetDirectoryName(_dir.Path)!, "evil.py")).ShouldBeFalse();
    }

    [Fact]
    public void Links_leaving_the_bundle_and_device_files_are_refused()
    {
        ShouldBeRefused(TarGz(File("code/function.py", FunctionPy), Symlink("code/passwd", "/etc/passwd")), "leaves the bundle", target: Target);
        ShouldBeRefused(TarGz(Symlink("code/up", "../../..")), "leaves the bundle");
        ShouldBeRefused(TarGz(Symlink("code/up", "sub/../../x")), "leaves the bundle");
        ShouldBeRefused(TarGz(HardLink("code/shadow", "/etc/shadow")), "leaves the bundle");
        ShouldBeRefused(TarGz(HardLink("code/h", "code/missing.py")), "not a file of the bundle");
        ShouldBeRefused(Zip([("code/link", "../../../etc/passwd"u8.ToArray(), 0xA1FF)]), "leaves the bundle");
        ShouldBeRefused(TarGz(Device("code/null")), "CharacterDevice");
        ShouldBeRefused(TarGz(Fifo("code/pipe")), "Fifo");
        ShouldBeRefused(Zip([("code/dev", [], 0x21B6)]), "device");
        Directory.Exists(Target) .ShouldBeTrue(); // created, but empty of anything dangerous
        new FileInfo(Path.Combine(Target, "code", "passwd")).Exists.ShouldBeFalse();
    }

    [Fact]
    public void Names_longer_than_a_file_system_holds_are_refused_before_anything_is_written()
    {
        var longName = "code/" + new string('a', 255) + ".py";
        ShouldBeRefused(Zip(("code/function.py", FunctionPy), (longName, "x")), "at most 255 bytes of UTF-8", target: Target);
        // Counted in bytes: 100 three-byte characters are 300 bytes.
        ShouldBeRefused(Zip(("code/" + new string('€', 100) + ".py", "x")), "at most 255 bytes");
        ShouldBeRefused(TarGz(File("code/" + new string('b', 3000), "x")), "at most 255 bytes", target: Target);
        var deep = string.Join('/', Enumerable.Repeat(new string('d', 200), 6)) + "/f.py";
        ShouldBeRefused(TarGz(File(deep, "x")), "entry paths may be at most 1024 bytes", target: Target);
        ShouldBeRefused(TarGz(Dir(deep)), "at most 1024 bytes");
        // The message names the entry, cut short, and stays readable.
        var e = Should.Throw<PolicyGridException>(() => BundleArchive.Validate(TarGz(File("code/" + new string('b', 3000), "x"))));
        e.Message.ShouldContain("code/bbbb");
        e.Message.Length.ShouldBeLessThan(400);
        // Right at the limits is fine.
        BundleArchive.Unpack(Zip(("code/function.py", FunctionPy), ("code/" + new string('a', 252) + ".py", "x")), Target, new ArchiveLimits()).Entries.ShouldBe(2);
    }

    [Fact]
    public void An_entry_named_twice_is_refused_rather_than_the_last_one_winning()
    {
        ShouldBeRefused(Zip(("code/function.py", FunctionPy), ("code/function.py", "raise SystemExit")), "'code/function.py' appears more than once", target: Target);
        ShouldBeRefused(TarGz(File("code/function.py", FunctionPy), File("./code//function.py", "x")), "appears more than once");
        ShouldBeRefused(TarGz(File("code/function.py", FunctionPy), Symlink("code/function.py", "other.py")), "appears more than once");
        // Directories may repeat: nothing is replaced.
        BundleArchive.Validate(TarGz(Dir("code"), Dir("code/"), File("code/function.py", FunctionPy))).Entries.ShouldBe(3);
    }

    [Fact]
    public void An_encrypted_zip_entry_is_refused()
    {
        var zip = Zip(("code/function.py", FunctionPy));
        // Set bit 0 (encrypted) of the general purpose flags in the local and the central directory headers.
        for (var i = 0; i + 4 <= zip.Length; i++)
        {
            if (zip.AsSpan(i).StartsWith("PK\x03\x04"u8)) zip[i + 6] |= 1;
            else if (zip.AsSpan(i).StartsWith("PK\x01\x02"u8)) zip[i + 8] |= 1;
        }
        ShouldBeRefused(zip, "encrypted entries are not supported", target: Target);
    }

    [Fact]
    public void A_zip_bomb_is_refused_by_its_compression_ratio()
    {
        var bomb = Zip([("code/function.py", "x"u8.ToArray(), 0), ("code/zeros.bin", new byte[4 * 1024 * 1024], 0)]);
        bomb.Length.ShouldBeLessThan(20_000);
        ShouldBeRefused(bomb, "decompression bomb", target: Target);
        var gzBomb = TarGz(new PaxTarEntry(TarEntryType.RegularFile, "zeros") { DataStream = new MemoryStream(new byte[4 * 1024 * 1024]) });
        ShouldBeRefused(gzBomb, "decompression bomb");
        // The same archive passes when the operator allows that ratio.
        BundleArchive.Validate(bomb, new ArchiveLimits { MaxCompressionRatio = 100_000 }).Bytes.ShouldBe(4 * 1024 * 1024 + 1);
    }

    [Fact]
    public void Hard_links_count_against_the_size_cap_as_the_copies_they_are_written_as()
    {
        // One 10 KB file and ten hard links to it: each link is written as a copy, 110 KB on disk.
        static byte[] Archive(int links) =>
            TarGz([File("code/big.txt", new string('a', 10_000)), .. Enumerable.Range(0, links).Select(i => HardLink($"code/copy{i}.txt", "code/big.txt"))]);
        var limits = new ArchiveLimits { MaxTotalBytes = 50_000, MaxCompressionRatio = 1e9 };
        ShouldBeRefused(Archive(10), "more than 50000 bytes (at 'code/copy4.txt'", limits, target: Target);
        Directory.GetFiles(Path.Combine(Target, "code")).Length.ShouldBeLessThan(11);
        BundleArchive.Validate(Archive(4), limits).Bytes.ShouldBe(50_000);
    }

    [Fact]
    public void A_zip_link_entry_that_decompresses_to_more_than_a_path_is_refused_without_reading_it_whole()
    {
        // 10 MB of link target in a 10 KB zip: it was read whole into memory (a 100 MB upload could unpack to
        // gigabytes), and accepted at upload only to fail when a policy used it.
        var bomb = Zip([("code/link", System.Text.Encoding.ASCII.GetBytes(new string('a', 10_000_000)), 0xA1FF)]);
        bomb.Length.ShouldBeLessThan(20_000);
        ShouldBeRefused(bomb, "'code/link' is a link whose target is longer than 1024 bytes", target: Target);
        ShouldBeRefused(TarGz(Symlink("code/link", new string('a', 2000))), "longer than 1024 bytes");
        BundleArchive.Validate(Zip([("code/link", "function.py"u8.ToArray(), 0xA1FF)])).Entries.ShouldBe(1);
    }

    [Fact]
    public void A_path_that_is_both_a_file_and_a_directory_is_refused_naming_both_entries()
    {
        // A directory entry then a file at its path failed in the unpack with a 500 (access denied); the other orders
        // passed the upload check and failed later, naming a path on the server instead of the entries.
        ShouldBeRefused(TarGz(Dir("code/x"), File("code/x", "hi")), "entry 'code/x' is a file or link, but entry 'code/x' needs it to be a directory", target: Path.Combine(Target, "1"));
        ShouldBeRefused(TarGz(File("code/x", "hi"), File("code/x/y.py", "hi")), "entry 'code/x' is a file or link, but entry 'code/x/y.py' needs it", target: Path.Combine(Target, "2"));
        ShouldBeRefused(TarGz(File("code/x/y.py", "hi"), Symlink("code/x", "z")), "entry 'code/x' is a file or link, but entry 'code/x/y.py' needs it");
        ShouldBeRefused(TarGz(Symlink("code/l", "sub"), File("code/l/f.py", "hi")), "entry 'code/l' is a file or link");
        ShouldBeRefused(TarGz(Symlink("code/l", "x"), Symlink("code/l/y", "z")), "entry 'code/l' is a file or link");
        ShouldBeRefused(Zip(("code/a/b/c.py", "x"), ("code/a", "y")), "entry 'code/a' is a file or link, but entry 'code/a/b/c.py'");
        ShouldBeRefused(TarGz(File("code/a", "y"), Dir("code/a/b/")), "entry 'code/a' is a file or link, but entry 'code/a/b/'");
        BundleArchive.Validate(TarGz(File("code/a/b/c.py", "x"), Dir("code/a"), File("code/a/d.py", "x"), Dir("code/a/b"))).Entries.ShouldBe(4);
    }

    [Fact]
    public void Entry_count_and_total_size_caps_are_enforced()
    {
        var many = Zip(Enumerable.Range(0, 30).Select(i => ($"code/f{i}.py", "x")).ToArray());
        ShouldBeRefused(many, "more than 20 entries", new ArchiveLimits { MaxEntries = 20 });
        var big = TarGz(File("code/big.txt", new string('a', 10_000)));
        ShouldBeRefused(big, "more than 5000 bytes", new ArchiveLimits { MaxTotalBytes = 5_000, MaxCompressionRatio = 1e9 });
        BundleArchive.Validate(many, new ArchiveLimits { MaxEntries = 30 }).Entries.ShouldBe(30);
    }

    [Fact]
    public void A_zip_with_more_entries_than_the_cap_is_refused_from_its_directory_before_the_entries_are_read()
    {
        // The zip reader made an object of every entry before the first could be counted: ~600 MB of memory for a
        // 64 MiB upload of empty entries. The central directory is now counted in place first.
        var many = Zip(Enumerable.Range(0, 30).Select(i => ($"code/f{i}.py", "x")).ToArray());
        BundleArchive.ZipDirectoryEntries(many).ShouldBe(30);
        ShouldBeRefused(many, "more than 20 entries (30 in its zip directory", new ArchiveLimits { MaxEntries = 20 });
        // With a comment after the directory, and for a zip64 directory (written by Python's zipfile).
        var commented = many.ToArray();
        commented[^2] = 5; // comment length 5
        BundleArchive.ZipDirectoryEntries([.. commented, .. "hello"u8]).ShouldBe(30);
        BundleArchive.ZipDirectoryEntries(PythonZip64(25)).ShouldBe(25);
        ShouldBeRefused(PythonZip64(25), "(25 in its zip directory", new ArchiveLimits { MaxEntries = 20 });
        // Something that only starts like a zip is left to the zip reader, which says what is wrong.
        BundleArchive.ZipDirectoryEntries([.. "PK\x03\x04"u8, .. new byte[200]]).ShouldBeNull();
    }

    /// <summary>A zip with a zip64 end record, as Python writes one when its zip64 threshold is 0.</summary>
    private static byte[] PythonZip64(int entries)
    {
        var path = Path.Combine(Path.GetTempPath(), "pg-zip64-" + Guid.NewGuid().ToString("N") + ".zip");
        var script = "import sys, zipfile\nzipfile.ZIP64_LIMIT = 0\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n" +
                     $"    for i in range({entries}):\n        z.writestr('code/f%d.py' % i, b'x')\n";
        using (var python = System.Diagnostics.Process.Start("python3", ["-c", script, path]))
            python.WaitForExit();
        try { return System.IO.File.ReadAllBytes(path); } finally { System.IO.File.Delete(path); }
    }
}

public sealed class BundleRequirementsTests
{
    [Theory]
    [InlineData("ERROR: Could not find a version that satisfies the requirement leftpad==1.0 (from versions: none)\nERROR: No matching distribution found for leftpad==1.0\n", "leftpad==1.0")]
    [InlineData("ERROR: Could not find a version that satisfies the requirement numpy>=9 (from versions: 1.0)\n", "numpy>=9")]
    [InlineData("ERROR: Invalid requirement: 'not a requirement!!' (from line 1 of /x/requirements.txt)\n", "not a requirement!!")]
    [InlineData("Collecting x\nERROR: something else went wrong\n", "something else went wrong")]
    public void Pip_failures_name_what_could_not_be_installed(string pipOutput, string named) =>
        BundleRequirements.Explain(pipOutput).ShouldContain(named);
}
