using System.Security.Cryptography;
using System.Text;
using PolicyGrid.Runtime.Bundles;

namespace PolicyGrid.Runtime.Tests;

/// <summary>Writes policy source into an unpacked bundle directory that the unprivileged worker user can read.</summary>
internal static class TestBundles
{
    public static readonly string Root = Path.Combine(Path.GetTempPath(), "policygrid-runtime-tests", Environment.ProcessId.ToString());

    public static BundleDirectory FromSource(string functionPy)
    {
        var sha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(functionPy + Guid.NewGuid())));
        var root = Path.Combine(Root, sha[..16]);
        Directory.CreateDirectory(Path.Combine(root, "code"));
        File.WriteAllText(Path.Combine(root, "code", "function.py"), functionPy);
        return new BundleDirectory(sha, root, null);
    }

    /// <summary>A policy whose eval answers {"ok": true}, and nothing more.</summary>
    public static BundleDirectory AnswersOk() => FromSource("""
        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                pass
            def eval(self, parameters, input_data, context):
                return {"ok": True}
        """);

    /// <summary>A bundle directory with files but no code/function.py.</summary>
    public static BundleDirectory Empty()
    {
        var sha = Convert.ToHexStringLower(SHA256.HashData(Guid.NewGuid().ToByteArray()));
        var root = Path.Combine(Root, sha[..16]);
        Directory.CreateDirectory(Path.Combine(root, "code"));
        File.WriteAllText(Path.Combine(root, "code", "README.txt"), "no policy here");
        return new BundleDirectory(sha, root, null);
    }

    /// <summary>The repository's samples/policies/&lt;name&gt; as a bundle directory.</summary>
    public static BundleDirectory Sample(string name)
    {
        var dir = Path.Combine(RepoRoot(), "samples", "policies", name);
        var source = File.ReadAllText(Path.Combine(dir, "code", "function.py"));
        // Copy: the repo checkout may sit under /root, which the worker user cannot read.
        var bundle = FromSource(source);
        return bundle;
    }

    public static string RepoRoot()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "PolicyGrid.sln")) && !File.Exists(Path.Combine(dir, "PolicyGrid.slnx")))
            dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("repository root not found");
    }
}

/// <summary>Removes the bundle, data and worker directories this test run wrote.</summary>
public sealed class TestFilesCleanup : IDisposable
{
    public void Dispose()
    {
        try { Directory.Delete(TestBundles.Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
