using PolicyGrid.Core.Errors;
using Shouldly;

namespace PolicyGrid.Core.Tests;

public sealed class DiskFailuresTests
{
    [Fact]
    public void A_write_to_a_device_with_no_space_is_a_503_that_names_no_path()
    {
        if (!File.Exists("/dev/full")) Assert.Skip("needs /dev/full (Linux)");
        var failure = Should.Throw<IOException>(() => File.WriteAllBytes("/dev/full", new byte[64]));

        var answer = DiskFailures.Of(failure).ShouldNotBeNull();
        answer.Status.ShouldBe(503);
        answer.Code.ShouldBe(ErrorCodes.BackendUnavailable);
        answer.Message.ShouldBe("the server's storage is full (no space left on device); retry once space has been freed on the server's disk");
        answer.Message.ShouldNotContain("/dev");
    }

    [Fact]
    public void Other_io_failures_are_not_the_disks()
    {
        DiskFailures.Of(Should.Throw<FileNotFoundException>(() => File.ReadAllBytes(Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N"))))).ShouldBeNull();
        DiskFailures.Of(new IOException("a broken pipe", 32)).ShouldBeNull();
        DiskFailures.Of(new IOException("no errno")).ShouldBeNull();
        DiskFailures.Of(new IOException("read-only", 30))!.Message.ShouldStartWith("the server's storage cannot be written (read-only file system)");
    }
}
