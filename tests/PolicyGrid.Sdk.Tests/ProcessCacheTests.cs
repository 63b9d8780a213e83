using System.Diagnostics;
using PolicyGrid.Sdk.Evaluation;

namespace PolicyGrid.Sdk.Tests;

/// <summary>The default bundle cache (no CacheDirectory given) does not pile up in the temp directory.</summary>
public sealed class ProcessCacheTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("pg-sdk-temp-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [Fact]
    public async Task Caches_of_processes_that_ended_are_swept_and_live_ones_kept()
    {
        // A process that has certainly ended: start one and wait for it.
        using var ended = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        await ended.WaitForExitAsync(TestContext.Current.CancellationToken);
        var abandoned = Directory.CreateDirectory(Path.Combine(_temp, $"policygrid-sdk-{ended.Id}-abc123", "0123", "code")).Parent!.Parent!.FullName;
        var mine = Directory.CreateDirectory(Path.Combine(_temp, $"policygrid-sdk-{Environment.ProcessId}-def456")).FullName;
        var unnamed = Directory.CreateDirectory(Path.Combine(_temp, "policygrid-sdk-Xy12Ab")).FullName; // no pid: not ours to judge

        BundleFetcher.SweepAbandonedProcessCaches(_temp);

        Directory.Exists(abandoned).ShouldBeFalse();
        Directory.Exists(mine).ShouldBeTrue();
        Directory.Exists(unnamed).ShouldBeTrue();
    }

    [Fact]
    public void The_process_cache_names_its_process()
    {
        Path.GetFileName(BundleFetcher.ProcessCacheDirectory()).ShouldStartWith($"policygrid-sdk-{Environment.ProcessId}-");
    }
}
