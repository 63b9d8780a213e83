using System.Diagnostics;
using System.IO.Pipes;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// When a worker is stopped, the processes still holding its pipes (or running as its own uid) are killed and reaped.
/// The worker process itself is .NET's <see cref="Process"/>, which reaps it: picked by the sweep, it was signalled
/// and then reaped by the sweep's waitpid while it was still a zombie, and .NET's next look at its children ended the
/// whole server ("Error while reaping child. errno = 10", FailFast; seen once in a few full Runtime suite runs, after a
/// worker was killed at its deadline, whose sweep starts at once).
/// </summary>
public sealed class ProcessSweepTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_pipe_sweep_kills_what_else_holds_the_pipe_but_never_the_process_it_spares()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("reads /proc");
        // A child of ours (as a worker is) writing to our pipe, and a grandchild of it holding the same pipe as its stdout.
        using var child = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", "sleep 60 & echo $!; wait; echo spared"])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
        })!;
        try
        {
            var grandchild = int.Parse((await child.StandardOutput.ReadLineAsync(Ct))!.Trim(), System.Globalization.CultureInfo.InvariantCulture);
            var pipe = ProcessSignals.PipeOf((int)((PipeStream)child.StandardOutput.BaseStream).SafePipeHandle.DangerousGetHandle());
            pipe.ShouldNotBeNull();

            var killed = new List<int>();
            ProcessSignals.KillPipeHolders([pipe], spare: child.Id, killed).ShouldBe(1);

            killed.ShouldBe([grandchild], "only the grandchild is the sweep's to kill and reap");
            // The shell's wait ended with its killed child, and the shell itself went on: it was not signalled.
            (await child.StandardOutput.ReadLineAsync(Ct)).ShouldBe("spared");
            await child.WaitForExitAsync(Ct);
            child.ExitCode.ShouldBe(0);
        }
        finally
        {
            if (!child.HasExited) child.Kill(entireProcessTree: true);
        }
    }
}
