namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// How the Python worker pool runs policy code (configuration section <c>PolicyGrid:Runtime:Pool</c>).
/// The defaults are safe for a shared server; every limit is per worker process.
/// </summary>
public sealed class WorkerPoolOptions
{
    /// <summary>Interpreter to run workers with: a name looked up on PATH or an absolute path.</summary>
    public string PythonExecutable { get; set; } = "python3";

    /// <summary>
    /// Used when <see cref="PythonExecutable"/> cannot run as <see cref="RunAsUser"/> (e.g. a pyenv
    /// interpreter under /root, which is mode 0700). Empty disables the fallback.
    /// </summary>
    public string FallbackPythonExecutable { get; set; } = "/usr/bin/python3";

    /// <summary>Long-lived worker processes: of the pool, or with <see cref="IsolatePolicies"/> at most this many per policy.</summary>
    public int Workers { get; set; } = Math.Max(2, Environment.ProcessorCount);

    /// <summary>
    /// Calls that any worker may run (Type 2 evals) of a policy whose recent calls took less than this join a worker
    /// that is already busy with such calls, instead of waking an idle one. Short calls then travel in larger batches
    /// (one write and one wake-up of the worker for many calls), which costs far less CPU per call than spreading them
    /// one or two per worker. Longer calls, calls not timed yet, and any call while a worker runs one of those go to
    /// the least busy worker, so nothing short waits behind something long (nor behind a call already running ten
    /// times this long). Zero turns packing off.
    /// </summary>
    public TimeSpan PackCallsUnder { get; set; } = TimeSpan.FromMicroseconds(500);

    /// <summary>A worker whose Python process used this share of a CPU lately takes no packed calls (see <see cref="PackCallsUnder"/>), so load spreads before one worker saturates.</summary>
    public double PackBelowCpuShare { get; set; } = 0.5;

    /// <summary>
    /// Each policy (by name: all its versions) runs in worker processes of its own, never in an interpreter another
    /// policy's code runs in: there, one policy could read another's parameters, settings and context from memory, or
    /// patch its class to answer what it likes. False runs every policy in one shared set of workers (fewer processes,
    /// for a server whose policies all come from one trusted author).
    /// </summary>
    public bool IsolatePolicies { get; set; } = true;

    /// <summary>
    /// With <see cref="IsolatePolicies"/>, how many policies keep their workers resident; a call of another one stops the
    /// workers of the least recently used idle policy (its next call starts them again, its Type 4 instances restored from
    /// their saved state). Each resident policy holds one worker process, and up to <see cref="Workers"/> while its calls overlap.
    /// </summary>
    public int MaxResidentPolicies { get; set; } = 32;

    /// <summary>
    /// A policy's workers no call has used for this long are stopped (its next call starts them again, its Type 4
    /// instances restored from their saved state), so a policy called once holds no process for good. Zero keeps them
    /// until <see cref="MaxResidentPolicies"/> needs the room.
    /// </summary>
    public TimeSpan IdleStopAfter { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>
    /// How often the policies whose workers run are checked against the document store, and those that were deleted or
    /// retired meanwhile torn down as their policy event would have (<see cref="Execution.PolicyTeardown.TearDownGoneAsync"/>):
    /// in the Dapr shape that event can be lost, and the workers then stayed until <see cref="IdleStopAfter"/>, those
    /// holding a Type 4 replica for good. One store read per policy whose workers run; none when no policy's do. Zero never checks.
    /// </summary>
    public TimeSpan GoneSweepInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Each worker gets a network namespace of its own with nothing in it: a policy can then reach no host, not this
    /// server's API, not a Dapr sidecar, not a cloud metadata endpoint (169.254.169.254). Policies that fetch data
    /// (ip_allowlist's remote list) then get none. Needs root with CAP_SYS_ADMIN, or unprivileged user namespaces;
    /// where neither is available, workers do not start and calls answer 503 with the reason.
    /// </summary>
    public bool DenyNetwork { get; set; }

    /// <summary>Calls admitted at once (running plus waiting), per policy with <see cref="IsolatePolicies"/>; more answer 429 overloaded.</summary>
    public int MaxQueue { get; set; } = 256;

    /// <summary>How long an admitted call may wait for its worker before answering 429.</summary>
    public TimeSpan QueueWait { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Retry-After (seconds) sent with 429.</summary>
    public int RetryAfterSeconds { get; set; } = 1;

    /// <summary>Warm instances one worker keeps; the least recently used is dropped beyond this.</summary>
    public int MaxInstancesPerWorker { get; set; } = 64;

    /// <summary>Unprivileged user workers switch to when the server runs as root (process limits do not bind root).</summary>
    public string RunAsUser { get; set; } = "nobody";

    /// <summary>
    /// When the server runs as root, each worker slot runs as a uid of its own (with a group of the same id), found
    /// free from <see cref="WorkerUidStart"/> up and locked for the pool's life. A policy can then signal, trace or
    /// read the temp dir of no worker but its own (with one shared user, <c>os.kill(-1, 9)</c> in any policy kills
    /// every worker, and every other process of that user), and a fork bomb exhausts only its own worker's
    /// <see cref="MaxProcesses"/>. False runs every worker as <see cref="RunAsUser"/>. Where the kernel refuses
    /// such uids (a user namespace that does not map them), the pool falls back to <see cref="RunAsUser"/> and says so.
    /// </summary>
    public bool SeparateWorkerUsers { get; set; } = true;

    /// <summary>
    /// Where the search for free worker uids starts (see <see cref="SeparateWorkerUsers"/>). The default,
    /// 0x70000000, is above the ranges systemd, container runtimes and directory services hand out.
    /// </summary>
    public int WorkerUidStart { get; set; } = 0x70000000;

    /// <summary>
    /// Fixed uids instead of the search (see <see cref="SeparateWorkerUsers"/>): when set (e.g. 61000), the server runs as
    /// root and <see cref="IsolatePolicies"/> is off, worker slot i runs as uid/gid base+i, unchecked (the range must be
    /// unused on the host: when a worker stops, every process of its uid is killed). With <see cref="IsolatePolicies"/> on, the search for free uids starts here instead.
    /// </summary>
    public int? WorkerUidBase { get; set; }

    /// <summary>Whether <paramref name="uid"/> is one this server's pools may run workers as (never the server's own).</summary>
    public bool IsWorkerUid(int uid) => SeparateWorkerUsers
        && (InRange(uid, WorkerUidStart) || (WorkerUidBase is { } b && InRange(uid, b)));

    private static bool InRange(int uid, int start) => uid >= start && (long)uid - start < WorkerUidLease.SearchSpan;

    /// <summary>
    /// When the server is not root, workers run as the server's own uid, which may read a process's environment
    /// and memory through /proc (tokens, other policies' data) and trace it. The pool then clears the server
    /// process's dumpable flag, which closes both (tested); the cost is that a crash of the server leaves no core
    /// dump and debuggers need CAP_SYS_PTRACE. Signals are not covered: a policy can still signal the server, which only
    /// a root server with <see cref="SeparateWorkerUsers"/> prevents.
    /// </summary>
    public bool HideServerFromWorkers { get; set; } = true;

    /// <summary>
    /// Where the pool makes its private directory (a new, unguessable name each start, removed at stop) holding the
    /// host script and each worker's temp dir (its TMPDIR and HOME). Empty: the system temp dir. A directory set
    /// here must not be writable by other users, who could otherwise swap the pool's directory for their own.
    /// </summary>
    public string WorkDirectory { get; set; } = "";

    /// <summary>
    /// Each worker gets a mount namespace of its own with one fresh tmpfs of <see cref="PrivateTempBytes"/> behind /tmp,
    /// /var/tmp and /dev/shm, its temp dir moved into its /tmp: nothing a policy writes there outlives its worker or is
    /// seen by the server or another policy (before, a policy's files stayed on the host, readable by every other
    /// policy, and a policy could fill the disk). The host's own three directories stay readable, read-only, under
    /// /tmp/.policygrid-host, where the worker loads bundles kept in them from. With it each worker also gets an IPC
    /// namespace of its own (and a fresh mqueue filesystem on /dev/mqueue where the host has one): System V shared memory,
    /// semaphores and message queues and POSIX message queues a policy makes reach no other worker and go with it.
    /// Needs a server running as root (with CAP_SYS_ADMIN); elsewhere the workers share the host's directories and IPC
    /// namespace, and the pool's ready line says so.
    /// </summary>
    public bool PrivateTemp { get; set; } = true;

    /// <summary>
    /// Size of the one tmpfs behind a worker's /tmp, /var/tmp and /dev/shm together (see <see cref="PrivateTemp"/>); it is
    /// memory, not disk, and not counted in <see cref="MemoryLimitBytes"/>. Writing past it fails with ENOSPC ("No space left on device").
    /// It also caps, apart from the tmpfs, the System V shared memory segments of the worker's IPC namespace together.
    /// </summary>
    public long PrivateTempBytes { get; set; } = 128L << 20;

    /// <summary>
    /// Makes workers with <see cref="PrivateTemp"/> show the host's temp dirs through binds even where the kernel can
    /// clone their mount trees: the path taken on kernels before 5.12 and under seccomp profiles that refuse open_tree or
    /// mount_setattr, which tests must be able to run here. Internal: no setting binds it, and a policy cannot reach it.
    /// </summary>
    internal bool BindHostViews { get; set; }

    /// <summary>RLIMIT_AS: address space per worker. Going over answers 422 policy_memory_limit.</summary>
    public long MemoryLimitBytes { get; set; } = 1L << 30;

    /// <summary>RLIMIT_NPROC: processes/threads of the worker user (shared by the workers of that user when they share one, see <see cref="SeparateWorkerUsers"/>).</summary>
    public int MaxProcesses { get; set; } = 64;

    /// <summary>RLIMIT_NOFILE.</summary>
    public int MaxOpenFiles { get; set; } = 256;

    /// <summary>RLIMIT_FSIZE: largest file a policy may write.</summary>
    public long MaxFileSizeBytes { get; set; } = 64L << 20;

    /// <summary>CPU seconds over a worker's life (RLIMIT_CPU: SIGXCPU here, SIGKILL 2 s later); the worker is replaced once it has used half.</summary>
    public int CpuSecondsPerWorker { get; set; } = 3600;

    /// <summary>Largest JSON answer a policy may return.</summary>
    public int MaxResultBytes { get; set; } = 16 << 20;

    /// <summary>Policy print/log output forwarded to the server log per call; the rest is counted and dropped.</summary>
    public int MaxLogBytesPerCall { get; set; } = 64 << 10;

    /// <summary>Longest single log line kept (longer lines are cut).</summary>
    public int MaxLogLineBytes { get; set; } = 4096;

    /// <summary>How long a worker may take to start and report ready.</summary>
    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Make the server a child subreaper so processes a policy forks, orphaned when its worker is
    /// killed, are reaped here instead of piling up as zombies under an init that does not reap.
    /// </summary>
    public bool ReapOrphans { get; set; } = true;

    /// <summary>Stdlib modules imported once as the worker user to prove the interpreter works for it.</summary>
    public string[] ProbeModules { get; set; } = ["ipaddress", "json", "re", "hashlib", "datetime"];
}
