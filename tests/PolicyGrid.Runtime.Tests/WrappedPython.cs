namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// Pythons for workers that start the real one in surroundings a test needs (a seccomp filter, a namespace of its own),
/// leaving the server and the host as they are. A seccomp filter refuses, with EPERM, the new mount API (open_tree,
/// mount_setattr), as some container runtimes' profiles do, and optionally every bind mount (mount(2) with MS_BIND and
/// not MS_REMOUNT) too; x86_64 only.
/// </summary>
internal static class WrappedPython
{
    // Installs the filter (no_new_privs first, so it needs no privilege) and execs the program with its arguments.
    private const string Launcher = """
        import ctypes, os, struct, sys

        mode, program = sys.argv[1], sys.argv[2]
        LD_W_ABS, JEQ_K, AND_K, RET_K = 0x20, 0x15, 0x54, 0x06
        ALLOW, EPERM = 0x7FFF0000, 0x00050000 | 1

        def op(code, k, jt=0, jf=0):
            return struct.pack("HBBI", code, jt, jf, k)

        prog = [op(LD_W_ABS, 4), op(JEQ_K, 0xC000003E, 1, 0), op(RET_K, ALLOW), op(LD_W_ABS, 0),  # x86_64, syscall number
                op(JEQ_K, 428, 0, 1), op(RET_K, EPERM),  # open_tree
                op(JEQ_K, 442, 0, 1), op(RET_K, EPERM)]  # mount_setattr
        if mode == "binds":  # mount(2) with MS_BIND and not MS_REMOUNT in its flags (args[3], low half at offset 40)
            prog += [op(JEQ_K, 165, 0, 4), op(LD_W_ABS, 40), op(AND_K, 0x1020), op(JEQ_K, 0x1000, 0, 1), op(RET_K, EPERM)]
        prog += [op(RET_K, ALLOW)]
        code = ctypes.create_string_buffer(b"".join(prog))
        fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(code)))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
        if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0) != 0:  # NO_NEW_PRIVS, SECCOMP filter
            raise OSError(ctypes.get_errno(), "installing the seccomp filter")
        os.execv(program, [program] + sys.argv[3:])
        """;

    /// <summary>
    /// A Python for workers that runs the real one under a seccomp filter refusing the new mount API (and, with
    /// <paramref name="refuseBinds"/>, bind mounts); null (with why) where it cannot work.
    /// </summary>
    public static string? RefusingMounts(string directory, bool refuseBinds, out string? whyNot)
    {
        var launcher = Path.Combine(directory, "refuse_mounts.py");
        File.WriteAllText(launcher, Launcher);
        var python = Create(directory, refuseBinds ? "python-refusing-binds" : "python-refusing-open-tree",
            $"exec PYTHON -I -S {launcher} {(refuseBinds ? "binds" : "newapi")} PYTHON \"$@\"", out whyNot);
        if (python is not null && System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
            whyNot = "the seccomp filter is written for x86_64";
        return whyNot is null ? python : null;
    }

    /// <summary>
    /// A Python for workers that runs <paramref name="command"/> (a shell command line in which PYTHON is the real
    /// interpreter and "$@" its arguments) instead: written into <paramref name="directory"/> as <paramref name="name"/>.
    /// Null (with why) where there is no system python3 the worker user may run.
    /// </summary>
    public static string? Create(string directory, string name, string command, out string? whyNot)
    {
        whyNot = null;
        var python = new[] { "/usr/bin/python3", "/usr/local/bin/python3" }.FirstOrDefault(File.Exists);
        if (python is null)
        {
            whyNot = "needs a system python3 the worker user may run";
            return null;
        }
        var wrapper = Path.Combine(directory, name);
        // The pool asks a script for its real interpreter first: this one names itself, so workers start through it.
        File.WriteAllText(wrapper, $"""
            #!/bin/sh
            if [ "$4" = "import sys; print(sys.executable)" ]; then echo "$0"; exit 0; fi
            {command.Replace("PYTHON", python, StringComparison.Ordinal)}
            """);
        using (var chmod = System.Diagnostics.Process.Start("chmod", ["755", wrapper])) chmod.WaitForExit();
        return wrapper;
    }
}
