using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// A bundle cache on a file system of its own mounted under /var/tmp (a volume for the cache, or
/// PolicyGrid:Runtime:Bundles:CacheDirectory pointed at one): a worker with a private /var/tmp saw the host's /var/tmp
/// through a bind that did not carry that mount, so every policy failed to load ("the bundle has no code/function.py",
/// a 400 blaming the policy at create). The worker sees it now, read-only like the rest of the host's view.
/// </summary>
public sealed class MountedBundleCacheTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_policy_loads_from_a_cache_on_its_own_mount_and_cannot_write_there()
    {
        if (!ProcessSignals.IsRoot) Assert.Skip("workers get mounts of their own only under a root server");
        using var disk = SmallDisk.Mount(1 << 20, under: "/var/tmp");
        var root = Path.Combine(disk.Path, "bundle");
        Directory.CreateDirectory(Path.Combine(root, "code"));
        File.WriteAllText(Path.Combine(root, "code", "function.py"), """
            import os

            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    pass
                def eval(self, parameters, input_data, context):
                    try:
                        with open(os.path.join(os.path.dirname(__file__), "planted.py"), "w") as f:
                            f.write("x = 1")
                        wrote = "written"
                    except OSError as e:
                        wrote = e.strerror
                    return {"loaded": True, "write": wrote}
            """);
        var sha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(root)));
        await using var pool = PoolFixture.NewPool(workers: 1);

        var result = await PoolFixture.EvalAsync(pool, "mounted:1.0-test", new BundleDirectory(sha, root, null));

        pool.Status.PrivateTemp.ShouldBeTrue();
        result["loaded"]!.GetValue<bool>().ShouldBeTrue();
        result["write"]!.GetValue<string>().ShouldBe("Read-only file system");
        File.Exists(Path.Combine(root, "code", "planted.py")).ShouldBeFalse();
    }
}
