using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Embedded.Jobs;

/// <summary>
/// Runs each job as its own OS process: <c>policygrid job-run --data &lt;dir&gt; --job &lt;id&gt;</c>. The
/// job process loads the policy, runs it on the runtime's worker pool (with its limits) and writes
/// the result into the same SQLite store itself, so the result survives whatever happens to this
/// server. Here we only watch the process: past its deadline it is killed (timed out); cancel kills
/// it; an exit without a recorded result is a failure whose reason names the exit code or signal and
/// the last lines it printed. A pid file per running job lets a restarted server re-attach. While a job process runs
/// it is listed in <see cref="PolicyProcesses"/>: it runs policy code with a worker pool of its own, and the API's
/// guard refuses what comes from it and its descendants as from this server's workers.
/// </summary>
public sealed class LocalJobLauncher(LocalJobOptions options, IConfiguration configuration, ILogger<LocalJobLauncher> logger, PolicyProcesses? policyProcesses = null) : IJobLauncher
{
    /// <summary>
    /// A job process's exit code when the store refused its outcome (a full disk, a read-only or failing file system;
    /// EX_TEMPFAIL of sysexits.h): the policy ran, and what it answered is lost.
    /// </summary>
    public const int OutcomeRefusedExitCode = 75;

    private readonly ConcurrentDictionary<string, TaskCompletionSource> cancels = new(StringComparer.Ordinal);

    private string PidDirectory => Path.Combine(options.DataDirectory, "jobs");

    private string PidFile(string jobId) => PidFileOf(options.DataDirectory, jobId);

    /// <summary>
    /// Where the server keeps a running job's pid (to re-attach after a restart). The job process removes it once its
    /// outcome is stored: a job that ended while no server watched it (the server killed, or stopped, meanwhile) left it
    /// in <c>jobs/</c> for good, since a restarted server follows only the jobs still open.
    /// </summary>
    public static string PidFileOf(string dataDirectory, string jobId) => Path.Combine(dataDirectory, "jobs", $"{jobId}.pid");

    /// <summary>What the job process printed (kept for the operator; its tail goes into a failure's reason).</summary>
    public string LogFile(string jobId) => Path.Combine(PidDirectory, $"{jobId}.log");

    private string Tail(string jobId)
    {
        try
        {
            using var file = new FileStream(LogFile(jobId), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            const int max = 4096;
            if (file.Length > max) file.Seek(-max, SeekOrigin.End);
            using var reader = new StreamReader(file, Encoding.UTF8);
            return reader.ReadToEnd().Trim();
        }
        catch (IOException)
        {
            return "";
        }
    }

    public async Task<JobOutcome> RunAsync(JobLaunch launch, CancellationToken ct)
    {
        var command = options.ResolveRunner();
        Directory.CreateDirectory(PidDirectory);
        // Output goes to a log file rather than pipes to this server, so the job outlives a server
        // restart without dying on a closed pipe, and an operator can read what it printed.
        var start = new ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            WorkingDirectory = options.DataDirectory,
        };
        foreach (var arg in new[] { "-c", "exec \"$@\" >>\"$PG_JOB_LOG\" 2>&1", "policygrid-job" }) start.ArgumentList.Add(arg);
        foreach (var arg in command) start.ArgumentList.Add(arg);
        foreach (var arg in new[] { "job-run", "--data", options.DataDirectory, "--job", launch.JobId }) start.ArgumentList.Add(arg);
        start.Environment["PG_JOB_LOG"] = LogFile(launch.JobId);
        // A temp directory of the job's own, removed here once the process has ended however it ended. What the process
        // makes in its temp dir (its scratch context file, its worker pool's directory, the .NET runtime's diagnostic
        // pipes and socket) is removed by the process itself only when it exits on its own: every cancelled or timed-out
        // job (killed) left five entries in the server's temp dir for good.
        var temp = MakeTempDirectory(launch.JobId);
        if (temp is not null) start.Environment["TMPDIR"] = temp;
        // The job process gets the runtime's settings (Python, limits) but never the API's tokens.
        foreach (var (key, value) in configuration.GetSection("PolicyGrid:Runtime").AsEnumerable())
            if (value is not null) start.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;

        var process = new Process { StartInfo = start };
        try
        {
            process.Start();
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            process.Dispose();
            RemoveTempDirectory(temp);
            return JobOutcome.Failed($"the job process could not be started ({string.Join(' ', command)}): {e.Message}");
        }
        var pid = process.Id;
        policyProcesses?.Add(pid);
        process.StandardInput.Close();
        var deadline = launch.Timeout + options.Grace;
        try
        {
            await WritePidFileAsync(launch.JobId, process, DateTimeOffset.UtcNow + deadline, temp);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The job runs (its process stores its own outcome): only a restart of this server meanwhile would lose track of
            // it. It used to fail the job, with the disk's raw error and a server path as its error, while its process ran
            // on unwatched.
            logger.LogWarning("job {JobId}: started process {Pid}, but its pid file could not be written ({Reason}); a restart of "
                + "the server before the job ends will record it as gone", launch.JobId, pid, (e is IOException io ? Core.Errors.DiskFailures.Of(io)?.Message : null) ?? e.Message);
            try { File.Delete(PidFile(launch.JobId) + ".tmp"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        logger.LogInformation("job {JobId}: started process {Pid}", launch.JobId, process.Id);

        using (process)
        {
            try
            {
                var outcome = await WatchAsync(launch.JobId, process, deadline, () => Tail(launch.JobId), ct);
                File.Delete(PidFile(launch.JobId));
                await RemoveTempDirectoryAsync(process, temp);
                return outcome;
            }
            finally
            {
                policyProcesses?.Remove(pid);
            }
        }
    }

    public async Task<JobOutcome> ReattachAsync(string jobId, CancellationToken ct)
    {
        // Read first: the job process removes the pid file once its outcome is stored.
        var pidFile = await ReadPidFileAsync(jobId);
        var temp = TempDirectoryOf(jobId, pidFile);
        var live = FindLive(pidFile);
        if (live is null)
        {
            RemoveTempDirectory(temp);
            File.Delete(PidFile(jobId));
            return JobOutcome.Failed("server restarted and the job's process is gone");
        }
        var (process, deadlineAt) = live.Value;
        logger.LogInformation("job {JobId}: re-attached to process {Pid}", jobId, process.Id);
        var pid = process.Id;
        policyProcesses?.Add(pid);
        using (process)
        {
            try
            {
                var left = deadlineAt - DateTimeOffset.UtcNow;
                var outcome = await WatchAsync(jobId, process, left > TimeSpan.Zero ? left : TimeSpan.Zero, () => Tail(jobId), ct);
                File.Delete(PidFile(jobId));
                await RemoveTempDirectoryAsync(process, temp);
                return outcome;
            }
            finally
            {
                policyProcesses?.Remove(pid);
            }
        }
    }

    public async Task CancelAsync(string jobId, CancellationToken ct)
    {
        cancels.GetOrAdd(jobId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        // A job re-attached after a restart or run by an earlier server has no watcher here: stop it directly.
        if (FindLive(await ReadPidFileAsync(jobId)) is { } live)
            using (live.Process)
                Kill(live.Process);
    }

    /// <summary>Removes the job's output log (<see cref="LogFile"/>) once retention removed its record.</summary>
    public Task ForgetAsync(string jobId, CancellationToken ct)
    {
        try
        {
            File.Delete(LogFile(jobId)); // none (never started, or removed already) is no error
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logger.LogWarning("job {JobId}: its log {Log} could not be removed: {Error}", jobId, LogFile(jobId), e.Message);
        }
        return Task.CompletedTask;
    }

    private async Task<JobOutcome> WatchAsync(string jobId, Process process, TimeSpan deadline, Func<string> output, CancellationToken ct)
    {
        var cancel = cancels.GetOrAdd(jobId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        try
        {
            using var timeout = new CancellationTokenSource(deadline);
            var exited = process.WaitForExitAsync(CancellationToken.None);
            var ended = await Task.WhenAny(exited, cancel.Task, Task.Delay(Timeout.Infinite, timeout.Token), Task.Delay(Timeout.Infinite, ct));
            if (ended == exited)
            {
                await exited;
                return Exited(process, output());
            }
            if (ended == cancel.Task)
            {
                Kill(process);
                return JobOutcome.Cancelled("cancelled by request");
            }
            if (timeout.IsCancellationRequested && !ct.IsCancellationRequested)
            {
                Kill(process);
                logger.LogWarning("job {JobId}: past its deadline; killed process {Pid}", jobId, process.Id);
                return JobOutcome.TimedOut($"the job ran past its deadline of {deadline.TotalSeconds:0.#######} s (timeout plus {options.Grace.TotalSeconds:0} s start-up allowance) and was stopped");
            }
            ct.ThrowIfCancellationRequested();
            throw new InvalidOperationException("unreachable");
        }
        finally
        {
            cancels.TryRemove(new KeyValuePair<string, TaskCompletionSource>(jobId, cancel));
        }
    }

    private static JobOutcome Exited(Process process, string output)
    {
        int code;
        try { code = process.ExitCode; }
        catch (InvalidOperationException) { return JobOutcome.Exited(); } // not our child (re-attached): the store says how it ended
        if (code == 0) return JobOutcome.Exited();
        var why = code == OutcomeRefusedExitCode
            ? "the job ran, but its process could not store the outcome: the server's storage refused the write (full, read-only or failing; the server's log and the job's say which)"
            : code > 128 && code < 160
            ? $"the job process was killed by signal {code - 128}{SignalName(code - 128)}"
            : $"the job process exited with code {code}";
        return JobOutcome.Failed(output.Length > 0 ? $"{why}; last output:\n{output}" : why);
    }

    private static string SignalName(int signal) => signal switch
    {
        9 => " (SIGKILL; out of memory or killed)",
        15 => " (SIGTERM)",
        6 => " (SIGABRT)",
        11 => " (SIGSEGV)",
        _ => "",
    };

    private static void Kill(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }

    // Under the server's temp dir, with an unguessable name (made by this root-capable process in a world-writable
    // directory). Traversable by all (0711), not listable: the job's workers, an unprivileged user, reach their pool's
    // directory inside it, as they did in the server's temp dir itself. Null (the server's temp dir is used, as before)
    // when it cannot be made.
    private string? MakeTempDirectory(string jobId)
    {
        try
        {
            var dir = Directory.CreateTempSubdirectory($"policygrid-job-{jobId}-").FullName;
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
            return dir;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logger.LogWarning("job {JobId}: no temp directory of its own could be made ({Reason}); it uses the server's, where a kill leaves what it made there", jobId, e.Message);
            return null;
        }
    }

    private async Task RemoveTempDirectoryAsync(Process process, string? temp)
    {
        if (temp is null) return;
        // A killed process (and the workers killed with it) may still be on its way out: let it go before removing what it
        // has open, so nothing is written into the directory after it was emptied.
        try { await process.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)); }
        catch (TimeoutException) { }
        catch (InvalidOperationException) { }
        RemoveTempDirectory(temp);
    }

    private void RemoveTempDirectory(string? temp)
    {
        if (temp is null) return;
        try
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logger.LogWarning("the temp directory of a job's process, {Directory}, could not be removed: {Reason}", temp, e.Message);
        }
    }

    // The fourth field of the pid file; files written before it existed have three.
    private static string? TempDirectoryOf(string jobId, string? pidFile)
    {
        var parts = pidFile?.Split(' ', 4);
        return parts is { Length: 4 } && Path.IsPathFullyQualified(parts[3])
            && Path.GetFileName(parts[3]).StartsWith($"policygrid-job-{jobId}-", StringComparison.Ordinal) ? parts[3] : null;
    }

    private async Task WritePidFileAsync(string jobId, Process process, DateTimeOffset deadlineAt, string? temp)
    {
        Directory.CreateDirectory(PidDirectory);
        var text = string.Join(' ', process.Id.ToString(CultureInfo.InvariantCulture),
            process.StartTime.ToUniversalTime().Ticks.ToString(CultureInfo.InvariantCulture),
            deadlineAt.UtcTicks.ToString(CultureInfo.InvariantCulture));
        if (temp is not null) text += " " + temp;
        // Written aside and renamed into place, so a reader never sees a half-written file.
        var temporary = PidFile(jobId) + ".tmp";
        await File.WriteAllTextAsync(temporary, text);
        File.Move(temporary, PidFile(jobId), overwrite: true);
    }

    // Process.StartTime on Linux is the boot time plus the kernel's start tick, and each process works the boot time out
    // as its own clock's now less the uptime: the server that restarted reads its predecessor's job process as started a
    // few microseconds (after a clock adjustment, somewhat more) away from what the pid file says. An exact comparison
    // took every live job for gone. A reused pid belongs to a process started later than this, not within it.
    private static readonly TimeSpan StartTimeTolerance = TimeSpan.FromSeconds(1);

    // The pid file's text; null when there is none: never written, or removed by the job process once its outcome was stored.
    private async Task<string?> ReadPidFileAsync(string jobId)
    {
        try
        {
            return await File.ReadAllTextAsync(PidFile(jobId));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    // The pid alone could have been reused by an unrelated process after a reboot; the start time pins it down.
    private static (Process Process, DateTimeOffset DeadlineAt)? FindLive(string? pidFile)
    {
        if (pidFile is null) return null;
        var parts = pidFile.Split(' ', 4);
        if (parts.Length < 3 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out var pid)
            || !long.TryParse(parts[1], CultureInfo.InvariantCulture, out var started)
            || !long.TryParse(parts[2], CultureInfo.InvariantCulture, out var deadline))
            return null;
        try
        {
            var process = Process.GetProcessById(pid);
            if (process.HasExited || Math.Abs(process.StartTime.ToUniversalTime().Ticks - started) > StartTimeTolerance.Ticks)
            {
                process.Dispose();
                return null;
            }
            return (process, new DateTimeOffset(deadline, TimeSpan.Zero));
        }
        catch (ArgumentException)
        {
            return null;
        }
    }
}

/// <summary>Where local jobs keep their pid files and how the <c>policygrid job-run</c> process is started.</summary>
public sealed class LocalJobOptions
{
    public const string Section = "PolicyGrid:Jobs:Local";

    public string DataDirectory { get; set; } = "";

    /// <summary>
    /// The command that starts <c>policygrid</c> (e.g. <c>["/usr/local/bin/policygrid"]</c> or
    /// <c>["dotnet", "/opt/policygrid/policygrid.dll"]</c>); empty finds it next to this server.
    /// </summary>
    public string[] RunnerCommand { get; set; } = [];

    /// <summary>Time past a job's timeout before its process is killed: the process's own start-up, and the runtime's deadline answering first.</summary>
    public TimeSpan Grace { get; set; } = TimeSpan.FromSeconds(15);

    public string[] ResolveRunner()
    {
        if (RunnerCommand.Length > 0) return RunnerCommand;
        var self = Environment.ProcessPath ?? "";
        if (Path.GetFileNameWithoutExtension(self) == "policygrid") return [self];
        var dll = Path.Combine(AppContext.BaseDirectory, "policygrid.dll");
        if (File.Exists(dll))
            return [Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet", dll];
        return ["policygrid"];
    }
}
