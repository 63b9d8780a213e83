using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>Directories that hold code workers run, or hand workers their temp dirs, must be this server's own.</summary>
public sealed class TrustedDirectoryTests : IDisposable
{
    private const UnixFileMode Traversable = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
    private const string Setting = "PolicyGrid:Test:Directory";
    private readonly string root = Path.Combine(Path.GetTempPath(), "pg-trusted-" + Guid.NewGuid().ToString("N")[..8]);

    public TrustedDirectoryTests() => Directory.CreateDirectory(root);

    public void Dispose() => Directory.Delete(root, recursive: true);

    private static void SkipUnlessRootOnLinux()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root") Assert.Skip("needs root on Linux: the tests hand directories to another user");
    }

    private static void Chown(string path, string user)
    {
        using var process = System.Diagnostics.Process.Start("chown", [user, path]);
        process.WaitForExit();
        process.ExitCode.ShouldBe(0);
    }

    [Fact]
    public void A_new_directory_is_made_with_the_mode_asked_for()
    {
        if (OperatingSystem.IsWindows()) return;
        var dir = TrustedDirectory.Ensure(Path.Combine(root, "a", "b"), Traversable, Setting);
        File.GetUnixFileMode(dir).ShouldBe(Traversable);
    }

    [Fact]
    public void A_directory_another_user_made_first_is_refused_naming_the_setting()
    {
        SkipUnlessRootOnLinux();
        var planted = Path.Combine(root, "cache");
        Directory.CreateDirectory(planted);
        Chown(planted, "nobody");
        var error = Should.Throw<InvalidOperationException>(() => TrustedDirectory.Ensure(planted, Traversable, Setting));
        error.Message.ShouldContain("belongs to uid 65534");
        error.Message.ShouldContain(Setting);
    }

    [Fact]
    public void A_directory_under_one_another_user_owns_is_refused()
    {
        SkipUnlessRootOnLinux();
        var theirs = Path.Combine(root, "theirs");
        Directory.CreateDirectory(theirs);
        Chown(theirs, "nobody");
        var error = Should.Throw<InvalidOperationException>(() => TrustedDirectory.Ensure(Path.Combine(theirs, "cache"), Traversable, Setting));
        error.Message.ShouldContain($"{theirs} above it belongs to uid 65534");
    }

    [Fact]
    public void A_link_above_it_that_another_user_owns_is_refused_even_when_it_points_at_a_directory_of_ours()
    {
        SkipUnlessRootOnLinux();
        var ours = Directory.CreateDirectory(Path.Combine(root, "ours")).FullName;
        var link = Path.Combine(root, "their-link");
        File.CreateSymbolicLink(link, ours);
        using (var chown = System.Diagnostics.Process.Start("chown", ["-h", "nobody", link])) chown.WaitForExit();
        Should.Throw<InvalidOperationException>(() => TrustedDirectory.Ensure(Path.Combine(link, "cache"), Traversable, Setting))
            .Message.ShouldContain("is a link that belongs to uid 65534");
    }

    [Fact]
    public void A_symbolic_link_is_refused()
    {
        if (!OperatingSystem.IsLinux()) return;
        var target = Directory.CreateDirectory(Path.Combine(root, "target")).FullName;
        var link = Path.Combine(root, "link");
        File.CreateSymbolicLink(link, target);
        Should.Throw<InvalidOperationException>(() => TrustedDirectory.Ensure(link, Traversable, Setting)).Message.ShouldContain("symbolic link");
    }

    [Fact]
    public void A_world_writable_directory_above_it_that_this_user_owns_is_made_sticky()
    {
        if (!OperatingSystem.IsLinux()) return;
        var shared = Directory.CreateDirectory(Path.Combine(root, "shared")).FullName;
        File.SetUnixFileMode(shared, (UnixFileMode)0b111_111_111);
        TrustedDirectory.Ensure(Path.Combine(shared, "mine"), Traversable, Setting);
        File.GetUnixFileMode(shared).ShouldBe((UnixFileMode)0b111_111_111 | UnixFileMode.StickyBit);
    }
}
