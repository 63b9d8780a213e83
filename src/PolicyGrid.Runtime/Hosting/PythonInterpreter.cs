using System.Diagnostics;
using System.Security.Cryptography;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// Finds the interpreter to run workers with, hands workers the host script, and makes the pool's directory.
/// A name like <c>python3</c> is looked up on PATH; a script found there (a pyenv shim) is asked
/// for its real interpreter once, since workers get a clean environment a shim cannot work in
/// and would cost a shell start per worker.
/// </summary>
internal static class PythonInterpreter
{
    public static async Task<string> ResolveAsync(string executable, CancellationToken ct)
    {
        var path = Locate(executable)
            ?? throw new WorkerStartException($"Python executable '{executable}' was not found (PATH={Environment.GetEnvironmentVariable("PATH")})");
        if (!IsScript(path)) return path;
        var start = new ProcessStartInfo(path) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "-I", "-S", "-c", "import sys; print(sys.executable)" }) start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw new WorkerStartException($"could not run '{path}'");
        var stdout = await process.StandardOutput.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        var real = stdout.Trim();
        if (process.ExitCode != 0 || real.Length == 0 || !File.Exists(real))
            throw new WorkerStartException($"'{path}' did not name its interpreter (exit code {process.ExitCode})");
        return real;
    }

    private static string? Locate(string executable)
    {
        if (executable.Contains('/', StringComparison.Ordinal)) return File.Exists(executable) ? Path.GetFullPath(executable) : null;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, executable);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static bool IsScript(string path)
    {
        Span<byte> head = stackalloc byte[2];
        using var file = File.OpenRead(path);
        return file.Read(head) == 2 && head[0] == (byte)'#' && head[1] == (byte)'!';
    }

    /// <summary>policy_host.py, as embedded in this assembly.</summary>
    public static byte[] HostScript => hostScript.Value;

    private static readonly Lazy<byte[]> hostScript = new(() =>
    {
        using var resource = typeof(PythonInterpreter).Assembly.GetManifestResourceStream("PolicyGrid.Runtime.Hosting.policy_host.py")
            ?? throw new InvalidOperationException("policy_host.py is not embedded in PolicyGrid.Runtime");
        using var copy = new MemoryStream();
        resource.CopyTo(copy);
        return copy.ToArray();
    });

    /// <summary>
    /// What a worker runs (<c>python -c</c>): it reads the host script as the first frame on its stdin and runs it.
    /// The script never sits in a file, so nobody can swap in their own for a root server to run before it drops
    /// privileges (a file in a directory another user can rename entries of would allow exactly that).
    /// </summary>
    public const string Bootstrap = """
        import os, struct
        def _read(n):
            data = b""
            while len(data) < n:
                chunk = os.read(0, n - len(data))
                if not chunk:
                    raise SystemExit(3)
                data += chunk
            return data
        exec(compile(_read(struct.unpack(">I", _read(4))[0]), "policy_host.py", "exec"))
        """;

    /// <summary>
    /// Makes the pool's private directory, which holds each worker's temp dir: a new one with an unguessable name
    /// under <paramref name="parent"/> (the system temp dir when empty), traversable by workers (each reaches its
    /// own temp dir) but not listable, removed by the pool when it stops. The directories above it must be trusted
    /// (<see cref="TrustedDirectory"/>): a policy able to rename the pool's directory could put its own in its place.
    /// </summary>
    public static string CreateWorkDirectory(string parent)
    {
        if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException("policy workers need a POSIX system");
        parent = string.IsNullOrEmpty(parent) ? Path.GetTempPath() : parent;
        Directory.CreateDirectory(parent);
        var dir = Path.Combine(Path.GetFullPath(parent), "policygrid-workers-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)));
        return TrustedDirectory.Ensure(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute,
            "PolicyGrid:Runtime:Pool:WorkDirectory");
    }
}
