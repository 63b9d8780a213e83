using System.Diagnostics;
using System.Security.Cryptography;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>
/// Finds the interpreter to run workers with and puts the host script where workers can read it.
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

    /// <summary>Writes the embedded host script under <paramref name="workDirectory"/> (readable by the worker user) and answers its path.</summary>
    public static string ExtractHostScript(string workDirectory)
    {
        using var resource = typeof(PythonInterpreter).Assembly.GetManifestResourceStream("PolicyGrid.Runtime.Hosting.policy_host.py")
            ?? throw new InvalidOperationException("policy_host.py is not embedded in PolicyGrid.Runtime");
        using var copy = new MemoryStream();
        resource.CopyTo(copy);
        var bytes = copy.ToArray();
        var hash = Convert.ToHexStringLower(SHA256.HashData(bytes))[..12];
        if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException("policy workers need a POSIX system");
        var traversable = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        Directory.CreateDirectory(workDirectory, traversable);
        File.SetUnixFileMode(workDirectory, traversable);
        var dir = Path.Combine(workDirectory, "host-" + hash);
        Directory.CreateDirectory(dir, traversable);
        var script = Path.Combine(dir, "policy_host.py");
        if (!File.Exists(script) || new FileInfo(script).Length != bytes.Length)
        {
            var staging = script + "." + Guid.NewGuid().ToString("N")[..8];
            File.WriteAllBytes(staging, bytes);
            File.SetUnixFileMode(staging, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            File.Move(staging, script, overwrite: true);
        }
        return script;
    }
}
