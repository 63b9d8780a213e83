using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Functions.Tests;

/// <summary>Bundles as unpacked directories under /tmp (readable by the worker user), addressed as test://name.</summary>
internal sealed class TestBundleSource : IPolicyBundleSource
{
    private static readonly string Root = Path.Combine(Path.GetTempPath(), "policygrid-functions-tests", Environment.ProcessId.ToString());
    private readonly ConcurrentDictionary<string, BundleDirectory> _bundles = new();

    public string Add(string name, string functionPy)
    {
        var sha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(functionPy)));
        var root = Path.Combine(Root, name + "-" + sha[..12]);
        Directory.CreateDirectory(Path.Combine(root, "code"));
        // Test classes run in parallel and may add the same bundle while another's worker is loading it: write aside
        // and rename into place, so a reader sees the whole file or the same file as before, never a truncated one.
        var written = Path.Combine(root, "code", $"function.py.{Guid.NewGuid():N}");
        File.WriteAllText(written, functionPy);
        File.Move(written, Path.Combine(root, "code", "function.py"), overwrite: true);
        _bundles[$"test://{name}"] = new BundleDirectory(sha, root, null);
        return $"test://{name}";
    }

    public Task<BundleDirectory> GetAsync(string code, string? expectedSha256, CancellationToken ct) =>
        _bundles.TryGetValue(code, out var bundle) ? Task.FromResult(bundle) : throw Problems.NotFound($"no bundle {code}");
}
