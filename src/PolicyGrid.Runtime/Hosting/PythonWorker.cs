using System.Buffers;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>How to start one worker: interpreter, the pool's private directory (for worker temp dirs), and who it runs as.</summary>
internal sealed record WorkerLaunch(string Executable, string WorkDirectory, WorkerPoolOptions Options, bool DropPrivileges)
{
    /// <summary>Set per slot when <see cref="WorkerPoolOptions.WorkerUidBase"/> gives each slot its own uid.</summary>
    public int? Uid { get; init; }
}

/// <summary>A worker that could not start (bad interpreter, unreadable stdlib for the worker user, ...).</summary>
internal sealed class WorkerStartException(string message, string? setting = null) : Exception(message)
{
    /// <summary>The setting the worker could not be started with (not the interpreter's fault), when it named one.</summary>
    public string? Setting { get; } = setting;
}

/// <summary>
/// One long-lived Python process running policy_host.py. Calls are strictly one at a time (the
/// pool holds the slot's gate). Any failure that leaves the protocol in an unknown state kills
/// the whole process group; the pool then starts a replacement.
/// </summary>
internal sealed class PythonWorker : IAsyncDisposable
{
    private readonly Process process;
    private readonly Stream toHost;
    private readonly Stream fromHost;
    private int signalled;
    private readonly string tempDir;
    private readonly Task outputPump;
    private readonly WorkerPoolOptions options;
    private readonly ArrayBufferWriter<byte> outgoing = new(16 * 1024);
    private int killed;
    // Instance keys whose load spec this process has been sent (only the drainer touches it). The host may
    // still have dropped one (its instance cache is bounded): it then answers need_load and the request goes
    // again with the spec. Bounded too: forgetting only costs sending a spec again.
    private readonly HashSet<string> sentLoads = new(StringComparer.Ordinal);
    private const int MaxSentLoads = 4096;

    private PythonWorker(Process process, string tempDir, PolicyOutputLog output, WorkerPoolOptions options)
    {
        this.process = process;
        ownPid = process.Id;
        this.tempDir = tempDir;
        this.options = options;
        Output = output;
        toHost = process.StandardInput.BaseStream;
        fromHost = new BufferedStream(process.StandardOutput.BaseStream, 64 * 1024);
        outputPump = Task.Run(() => output.PumpAsync(process.StandardError.BaseStream));
        pipes = new[] { toHost, process.StandardOutput.BaseStream, process.StandardError.BaseStream }
            .Select(s => s is System.IO.Pipes.PipeStream p ? ProcessSignals.PipeOf((int)p.SafePipeHandle.DangerousGetHandle()) : null)
            .OfType<string>().ToHashSet(StringComparer.Ordinal);
    }

    // The worker process's pid: .NET's Process reaps it, so the sweeps below must never pick it (see ProcessSignals.KillPipeHolders).
    private readonly int ownPid;

    // The worker's three pipes as /proc names them: whatever still holds one once the worker is killed is a
    // descendant that left its process group, and is killed too (see SweepPipeHolders).
    private readonly HashSet<string> pipes;
    private readonly SemaphoreSlim sweeping = new(1, 1);

    /// <summary>
    /// Kills what still holds the worker's pipes after its group was killed, until nothing does (a holder may fork
    /// while it is looked for). Without it a grandchild that called setsid kept the reply pipe open, the blocked read
    /// of a timed-out call never ended, and the call and its slot waited forever.
    /// </summary>
    private async Task SweepPipeHoldersAsync()
    {
        // One sweep at a time; a second caller (KillAsync after the deadline's sweep) waits for it, so a stopped
        // worker's holders are dead and reaped before its caller is answered.
        await sweeping.WaitAsync();
        try
        {
            await KillAndReapAsync(killed => ProcessSignals.KillPipeHolders(pipes, ownPid, killed));
        }
        finally
        {
            sweeping.Release();
        }
    }

    // Signals until `kill` finds nothing more (a process may fork while it is looked for), then reaps what it signalled:
    // they are this server's children now (it is their subreaper) but in no worker's group, and would otherwise stay
    // zombies for the server's life.
    private static async Task KillAndReapAsync(Func<List<int>, int> kill)
    {
        var killed = new List<int>();
        for (var attempt = 0; attempt < 50 && kill(killed) > 0; attempt++)
            await Task.Delay(10);
        for (var attempt = 0; attempt < 50 && killed.RemoveAll(ProcessSignals.Reap) >= 0 && killed.Count > 0; attempt++)
            await Task.Delay(5);
    }

    /// <summary>
    /// Kills every process still running as this worker's uid when that uid is the worker's alone (a slot's own uid,
    /// which its replacement takes only once this stop is over): a grandchild that left the worker's group (setsid)
    /// and closed every pipe of the worker escapes both the group kill and the pipe sweep, and lived on for good.
    /// Never for a shared uid (<see cref="WorkerPoolOptions.RunAsUser"/>) or the server's own.
    /// </summary>
    private async Task SweepUidAsync()
    {
        if (exclusiveUid is not { } uid || uid <= 0 || Uid != uid) return;
        await KillAndReapAsync(killed => ProcessSignals.KillUid(uid, ownPid, killed));
    }

    // The uid this worker was given as its slot's own (WorkerLaunch.Uid), or null when it shares one.
    private int? exclusiveUid;

    public int Pid => process.Id;
    public int Uid { get; private set; }
    public string PythonVersion { get; private set; } = "";

    /// <summary>Why the worker's /tmp, /var/tmp and /dev/shm are the host's (see <see cref="WorkerPoolOptions.PrivateTemp"/>); null when they are its own.</summary>
    public string? SharedTemp { get; private set; }

    /// <summary>
    /// Why the worker's System V IPC objects and POSIX message queues are the host's (it has no IPC namespace of its own,
    /// which comes with <see cref="WorkerPoolOptions.PrivateTemp"/>); null when they are its own.
    /// </summary>
    public string? SharedIpc { get; private set; }

    /// <summary>How the worker sees the host's temp dirs (<see cref="WorkerPoolStatus.HostViews"/>); null when they are its own.</summary>
    public string? HostViews { get; private set; }

    /// <summary>Why the System V IPC objects of the worker's own IPC namespace are not capped (see <see cref="SharedIpc"/>); null when they are.</summary>
    public string? IpcUncapped { get; private set; }
    public PolicyOutputLog Output { get; }

    /// <summary>Whether the host reads this server's monotonic clock, and so refuses a request past its start_by (see <see cref="WorkerRequest.StartBy"/>).</summary>
    public bool SharesClock { get; private set; } = true;
    private static int clockWarned;
    public bool IsAlive => Volatile.Read(ref killed) == 0 && !process.HasExited;

    /// <summary>When the worker last answered a call (<see cref="Stopwatch"/> timestamp).</summary>
    public long LastAnswered => Volatile.Read(ref lastAnswered);
    private long lastAnswered;
    private long writtenAt;

    // The request now running could start at the later of the batch's write and the answer before it.
    private void NoteServiceTime(WorkerRequest request)
    {
        var now = Stopwatch.GetTimestamp();
        request.ServiceTicks = now - Math.Max(writtenAt, lastAnswered);
        Volatile.Write(ref lastAnswered, now);
    }

    /// <summary>CPU time the worker process has used, or null once it is gone.</summary>
    public TimeSpan? CpuTime
    {
        get
        {
            try { return process.TotalProcessorTime; }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception or IOException) { return null; }
        }
    }

    public static async Task<PythonWorker> StartAsync(WorkerLaunch launch, ILogger logger, CancellationToken ct)
    {
        var options = launch.Options;
        var tempDir = Path.Combine(launch.WorkDirectory, "w-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(tempDir);
        var start = new ProcessStartInfo(launch.Executable)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = tempDir,
        };
        // -I: ignore PYTHON* variables and user site, nothing unsafe on sys.path; -S: no site-packages of the
        // interpreter (a bundle's own virtualenv is added explicitly); -B: bundle dirs are read-only to workers.
        // The host script comes as the first frame on stdin (see PythonInterpreter.Bootstrap).
        foreach (var arg in new[] { "-I", "-S", "-B", "-c", PythonInterpreter.Bootstrap }) start.ArgumentList.Add(arg);
        // Built from scratch: nothing of the server's environment (tokens, keys) reaches policy code.
        start.Environment.Clear();
        start.Environment["PATH"] = "/usr/local/bin:/usr/bin:/bin";
        start.Environment["LANG"] = "C.UTF-8";
        start.Environment["LC_ALL"] = "C.UTF-8";
        start.Environment["HOME"] = tempDir;
        start.Environment["TMPDIR"] = tempDir;

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new WorkerStartException($"could not start {launch.Executable}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            TryDelete(tempDir);
            throw new WorkerStartException($"could not start Python '{launch.Executable}': {e.Message}");
        }

        var output = new PolicyOutputLog(logger, options.MaxLogBytesPerCall, options.MaxLogLineBytes, Guid.NewGuid().ToString("N"));
        var worker = new PythonWorker(process, tempDir, output, options);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(options.StartTimeout);
            await worker.toHost.WriteAsync(HostFrames.Raw(PythonInterpreter.HostScript), timeout.Token);
            await HostFrames.WriteAsync(worker.toHost, w => WriteConfig(w, launch, tempDir, output.Tag), timeout.Token);
            var ready = await Task.Run(() => HostFrames.Read(worker.fromHost, 1 << 16), CancellationToken.None).WaitAsync(timeout.Token);
            if (ready["ready"]?.GetValue<bool>() != true)
                throw new WorkerStartException(ready["error"]?.GetValue<string>() ?? "worker did not report ready", ready["setting"]?.GetValue<string>());
            worker.Uid = ready["uid"]?.GetValue<int>() ?? -1;
            worker.exclusiveUid = launch.Uid;
            worker.PythonVersion = ready["version"]?.GetValue<string>() ?? "";
            worker.SharedTemp = ready["shared_tmp"]?.GetValue<string>();
            worker.SharedIpc = ready["shared_ipc"]?.GetValue<string>();
            worker.IpcUncapped = ready["ipc_uncapped"]?.GetValue<string>();
            worker.HostViews = ready["host_views"]?.GetValue<string>();
            worker.SharesClock = ready["shares_clock"]?.GetValue<bool>() != false;
            if (!worker.SharesClock && Interlocked.Exchange(ref clockWarned, 1) == 0)
                logger.LogWarning("Policy workers do not read this server's monotonic clock: a budgeted call (X-PolicyGrid-Timeout-Ms) already "
                    + "written to a worker behind other calls runs even when its caller stopped waiting meanwhile");
            return worker;
        }
        catch (Exception e) when (e is not WorkerStartException)
        {
            await worker.KillAsync();
            throw new WorkerStartException(e is OperationCanceledException && !ct.IsCancellationRequested
                ? $"Python '{launch.Executable}' did not report ready within {options.StartTimeout.TotalSeconds:0.#}s"
                : $"Python '{launch.Executable}' failed to start: {e.Message}");
        }
        catch
        {
            await worker.KillAsync();
            throw;
        }
    }

    private static void WriteConfig(Utf8JsonWriter w, WorkerLaunch launch, string tempDir, string outputTag)
    {
        var o = launch.Options;
        w.WriteStartObject();
        if (launch.DropPrivileges)
        {
            if (launch.Uid is { } uid)
            {
                w.WriteNumber("uid", uid);
                w.WriteNumber("gid", uid);
            }
            else
            {
                w.WriteString("user", o.RunAsUser);
            }
        }
        w.WriteString("tmp_dir", tempDir);
        w.WriteString("output_tag", outputTag);
        w.WriteNumber("max_instances", o.MaxInstancesPerWorker);
        w.WriteNumber("max_frame_bytes", o.MaxResultBytes);
        // This server's monotonic clock now, in seconds: the host checks that its time.monotonic() is the same clock
        // (read a little later, within the start timeout) before it honours a request's start_by.
        w.WriteNumber("monotonic", (double)Stopwatch.GetTimestamp() / Stopwatch.Frequency);
        w.WriteNumber("monotonic_within", o.StartTimeout.TotalSeconds);
        if (o.DenyNetwork) w.WriteBoolean("isolate_network", true);
        if (o.PrivateTemp)
        {
            w.WriteStartObject("private_tmp");
            w.WriteNumber("size_bytes", o.PrivateTempBytes);
            if (o.BindHostViews) w.WriteBoolean("bind_views", true);
            w.WriteEndObject();
        }
        w.WriteStartObject("limits");
        w.WriteNumber("as_bytes", o.MemoryLimitBytes);
        w.WriteNumber("nproc", o.MaxProcesses);
        w.WriteNumber("nofile", o.MaxOpenFiles);
        w.WriteNumber("fsize_bytes", o.MaxFileSizeBytes);
        w.WriteNumber("cpu_seconds", o.CpuSecondsPerWorker);
        w.WriteEndObject();
        w.WriteStartArray("probe_modules");
        foreach (var m in o.ProbeModules) w.WriteStringValue(m);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>
    /// Sends a batch of request frames in one write and settles each request from its reply, in
    /// order. The worker runs them one after another, so while a reply is awaited its request is the
    /// one running and none after it has started: that request's deadline counts from the reply
    /// before it, its caller's cancellation ends it, and when the worker dies (or retires after a
    /// memory error or near its CPU cap, which the host announces in that reply) the requests after
    /// it are handed back in <paramref name="unstarted"/> to run on the replacement.
    /// </summary>
    /// <remarks>
    /// The pipe IO is blocking, on the drainer's thread: async pipe reads on Unix cost thread-pool
    /// hops that made a warm call several times slower than the policy itself. A blocked read is
    /// ended by killing the worker (the deadline timer and the caller's token both do that). The
    /// batch is kept under the pipe's capacity, so the write never waits for the worker to read
    /// while the worker waits for us to read its replies.
    /// </remarks>
    public async Task ExchangeAsync(IReadOnlyList<WorkerRequest> batch, List<WorkerRequest> unstarted)
    {
        int sent;
        try
        {
            sent = WriteBatch(batch);
            toHost.Write(outgoing.WrittenSpan);
            toHost.Flush();
            writtenAt = Stopwatch.GetTimestamp();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The worker was gone before any request reached it (it died between batches).
            var failure = await DiagnoseFailureAsync(batch[0].Policy, e);
            foreach (var request in batch) request.Fail(failure);
            return;
        }
        var rest = sent;
        for (var i = 0; i < sent; i++)
        {
            var outcome = await SettleAsync(batch[i]);
            // The host no longer had the instance: the request did not run, and goes again with its load spec
            // (SettleAsync stops the worker too when the reply came after a deadline signal or with retiring).
            if (outcome == Settled.NeedsLoad) unstarted.Add(batch[i]);
            if (outcome == Settled.WorkerStopped || (outcome == Settled.NeedsLoad && !IsAlive))
            {
                rest = i + 1;
                break;
            }
        }
        // What this worker never started (it stopped, or its frames did not fit in this write) goes next.
        for (var i = rest; i < batch.Count; i++) unstarted.Add(batch[i]);
    }

    // Writes as much of the batch as fits under WorkerSlot.MaxBatchBytes (at least one request) into the
    // outgoing buffer, load specs spliced in where this process lacks them; answers how many requests it took.
    private int WriteBatch(IReadOnlyList<WorkerRequest> batch)
    {
        outgoing.ResetWrittenCount();
        var count = 0;
        foreach (var request in batch)
        {
            var size = request.Frame.Length + (NeedsLoad(request) ? SpliceOf(request).Length : 0);
            if (count > 0 && outgoing.WrittenCount + size > WorkerSlot.MaxBatchBytes) break;
            WriteFrame(request);
            count++;
        }
        return count;
    }

    /// <summary>Whether this process has been sent the request's instance (or it needs none). Only the slot's drainer asks.</summary>
    public bool Holds(WorkerRequest request) => !NeedsLoad(request);

    private bool NeedsLoad(WorkerRequest request) => request.LoadKey is { } key && !sentLoads.Contains(key);

    // The request's frame, with its load spec (and state to restore) spliced in first when this process has
    // not had it yet: {"load":<spec>,"restore_state":<state>, + the frame's own properties.
    private void WriteFrame(WorkerRequest request)
    {
        if (request.Unloads is { } dropped) sentLoads.Remove(dropped);
        var frame = request.Frame.Span;
        if (!NeedsLoad(request))
        {
            outgoing.Write(frame);
            return;
        }
        var key = request.LoadKey!;
        if (sentLoads.Count >= MaxSentLoads) sentLoads.Clear();
        sentLoads.Add(key);
        request.CarriedLoad = true;
        var splice = SpliceOf(request);
        var body = frame[5..]; // after the length and the opening brace
        var header = outgoing.GetSpan(4);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header, splice.Length + body.Length);
        outgoing.Advance(4);
        outgoing.Write(splice);
        outgoing.Write(body);
    }

    // `{"load":<spec>,` and, when there is state to restore, `"restore_state":<state>,`: made once per request,
    // and only for one that has to create its instance.
    private static byte[] SpliceOf(WorkerRequest request)
    {
        if (request.Splice is { } made) return made;
        var buffer = new ArrayBufferWriter<byte>(request.LoadJson.Length + 64);
        buffer.Write("{\"load\":"u8);
        buffer.Write(request.LoadJson.Span);
        buffer.Write(","u8);
        if (request.RestoreState is { } state)
        {
            buffer.Write("\"restore_state\":"u8);
            using (var w = new Utf8JsonWriter(buffer)) state.WriteTo(w);
            buffer.Write(","u8);
        }
        return request.Splice = buffer.WrittenSpan.ToArray();
    }

    private enum Settled { Answered, NeedsLoad, WorkerStopped }

    // Reads the reply of the request now running: answered, to be sent again with its load spec, or the worker must not run anything more.
    private async Task<Settled> SettleAsync(WorkerRequest request)
    {
        Output.BeginCall();
        using var overrun = new CancellationTokenSource(request.Deadline);
        using (overrun.Token.UnsafeRegister(static w => ((PythonWorker)w!).Signal(), this))
        using (request.Ct.UnsafeRegister(static w => ((PythonWorker)w!).Signal(), this))
        {
            try
            {
                var reply = HostFrames.Read(fromHost, options.MaxResultBytes + 4096);
                NoteServiceTime(request);
                // Read before the reply is handed over: its caller takes members out of it at once
                // (PythonWorkerPool.Detach), and a JsonObject is not safe to read while it is changed.
                var retiring = reply["retiring"]?.GetValue<bool>() == true;
                if (request.LoadKey is { } key && reply["ok"]?.GetValue<bool>() != true)
                {
                    var kind = reply["kind"]?.GetValue<string>();
                    // A spec that failed to load or to restore its state, or an instance the host dropped: send the spec with
                    // the next call. So too a spec that came with a request the host did not start: it was not read.
                    if (kind is "load" or "restore" or "need_load" || (kind == "not_started" && request.CarriedLoad)) sentLoads.Remove(key);
                    if (kind == "need_load")
                    {
                        if (Volatile.Read(ref signalled) == 1 || retiring) await KillAsync();
                        return Settled.NeedsLoad;
                    }
                }
                // A request not started took the worker no time: it says nothing of how long its calls take (packing).
                if (request.StartBy != 0 && reply["kind"]?.GetValue<string>() == "not_started") request.ServiceTicks = -1;
                request.Answer(reply);
                // The answer won the race against a deadline that fired at the same moment: keep it,
                // but the worker was signalled and must not serve again. A worker that hit its memory
                // limit or nears its CPU cap says so in this reply and exits before reading more.
                if (Volatile.Read(ref signalled) == 1 || retiring)
                {
                    await KillAsync();
                    return Settled.WorkerStopped;
                }
                return Settled.Answered;
            }
            catch (Exception e) when (e is IOException or EndOfStreamException or InvalidDataException or JsonException or ObjectDisposedException)
            {
                NoteServiceTime(request);
                if (overrun.IsCancellationRequested)
                {
                    await KillAsync();
                    request.Fail(Problems.PolicyTimeout($"policy {request.Policy} ran past its deadline of {request.Deadline.TotalSeconds:0.#######}s; its worker was stopped"));
                }
                else if (request.Ct.IsCancellationRequested)
                {
                    await KillAsync();
                    request.Fail(new OperationCanceledException(request.Ct));
                }
                else
                {
                    request.Fail(await DiagnoseFailureAsync(request.Policy, e));
                }
                return Settled.WorkerStopped;
            }
        }
    }

    // Runs on a timer or cancellation callback: only sends the signal, which ends the blocked read.
    private void Signal()
    {
        Interlocked.Exchange(ref signalled, 1);
        try { ProcessSignals.KillGroup(process.Id); } catch (InvalidOperationException) { }
        _ = Task.Run(SweepPipeHoldersAsync);
    }

    private async Task<PolicyGridException> DiagnoseFailureAsync(string policy, Exception cause)
    {
        var exitedOnItsOwn = Volatile.Read(ref killed) == 0 && Volatile.Read(ref signalled) == 0;
        if (cause is InvalidDataException or JsonException)
        {
            await KillAsync();
            return Problems.PolicyCrashed($"policy {policy} broke the worker protocol ({cause.Message}); its worker was replaced");
        }
        using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
        {
            try { await process.WaitForExitAsync(wait.Token); } catch (OperationCanceledException) { }
        }
        if (!process.HasExited || !exitedOnItsOwn)
        {
            await KillAsync();
            return Problems.PolicyCrashed($"policy {policy} lost its worker ({cause.Message}); the worker was replaced");
        }
        var code = process.ExitCode;
        await KillAsync(); // the group: children the policy forked go too
        // .NET reports death by signal N as exit code 128+N.
        return code switch
        {
            128 + 24 => Problems.PolicyTimeout($"policy {policy} used up its CPU time limit (SIGXCPU); its worker was replaced"),
            128 + 9 => Problems.PolicyMemoryLimit($"policy {policy}'s worker was killed by SIGKILL: out of memory, or past its hard CPU-time limit with SIGXCPU caught; the worker was replaced"),
            > 128 => Problems.PolicyCrashed($"policy {policy} crashed its worker ({SignalName(code - 128)}); the worker was replaced"),
            _ => Problems.PolicyCrashed($"policy {policy} made its worker exit with code {code}; the worker was replaced"),
        };
    }

    private static string SignalName(int signal) => signal switch
    {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => $"signal {signal}",
    };

    private Task? stopping;
    private readonly Lock stopGate = new();

    /// <summary>
    /// Kills the worker's process group (the host made itself group leader), what still holds its pipes, and, when it
    /// ran as a uid of its own, every process of that uid; reaps them, removes its temp dir. Every caller waits for
    /// the one stop: a replacement on the slot's uid must not start while that uid is still being swept.
    /// </summary>
    public Task KillAsync()
    {
        lock (stopGate) return stopping ??= StopAsync();
    }

    private async Task StopAsync()
    {
        Interlocked.Exchange(ref killed, 1);
        int pid;
        try { pid = process.Id; } catch (InvalidOperationException) { return; }
        ProcessSignals.KillGroup(pid);
        try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } catch (System.ComponentModel.Win32Exception) { }
        using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
        {
            try { await process.WaitForExitAsync(wait.Token); } catch (OperationCanceledException) { }
        }
        // A fork bomb may still be spawning while the first signal lands; repeat until the group is empty. The group's
        // orphans are reaped only once .NET has reaped the worker, their leader (see ProcessSignals.ReapGroup).
        for (var attempt = 0; attempt < 50 && ProcessSignals.KillGroup(pid); attempt++)
        {
            if (process.HasExited) ProcessSignals.ReapGroup(pid);
            await Task.Delay(10);
        }
        if (process.HasExited) ProcessSignals.ReapGroup(pid);
        await SweepPipeHoldersAsync();
        await SweepUidAsync();
        try { await outputPump.WaitAsync(TimeSpan.FromSeconds(2)); } catch (TimeoutException) { }
        process.Dispose();
        await fromHost.DisposeAsync();
        TryDelete(tempDir);
    }

    public ValueTask DisposeAsync() => new(KillAsync());

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
