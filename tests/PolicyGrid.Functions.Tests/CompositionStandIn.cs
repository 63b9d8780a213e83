using System.IO.Compression;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Functions;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// Fills what the serve composition does not register yet (the runtime, a bundle source, the function host), so these
/// tests run the real API, host and worker pool today. Each piece is added only when missing: once `serve` composes
/// them itself, this adds nothing and the tests run the composition unchanged.
/// </summary>
internal static class CompositionStandIn
{
    public static void AddMissing(IServiceCollection services, IConfiguration configuration)
    {
        if (!services.Any(s => s.ServiceType == typeof(PythonWorkerPool))) services.AddPolicyRuntime(configuration);
        if (!services.Any(s => s.ServiceType == typeof(IPolicyBundleSource))) services.AddSingleton<IPolicyBundleSource, StoredBundles>();
        if (!services.Any(s => s.ServiceType == typeof(IFunctionHost))) services.AddEmbeddedFunctionHost(configuration);
    }

    /// <summary>bundle://sha256/… read from the bundle store and unzipped under /tmp, where the worker user can read it.</summary>
    private sealed class StoredBundles(IBundleStore store) : IPolicyBundleSource
    {
        private static readonly string Root = Path.Combine(Path.GetTempPath(), "pg-test-bundles", Environment.ProcessId.ToString());

        public async Task<BundleDirectory> GetAsync(string code, CancellationToken ct)
        {
            if (!code.StartsWith(BundleRef.Scheme, StringComparison.Ordinal)) throw Problems.BadRequest($"test bundles are bundle:// only, not {code}");
            var sha = code[BundleRef.Scheme.Length..];
            var root = Path.Combine(Root, sha);
            if (!Directory.Exists(root))
            {
                var bytes = await store.GetAsync(sha, ct) ?? throw Problems.NotFound($"no bundle {code}");
                var unpacking = root + "." + Guid.NewGuid().ToString("N");
                await ZipFile.ExtractToDirectoryAsync(new MemoryStream(bytes), unpacking, ct);
                try { Directory.Move(unpacking, root); } catch (IOException) { Directory.Delete(unpacking, true); }
            }
            return new BundleDirectory(sha, root, null);
        }
    }
}
