using System.Security.Cryptography;
using PolicyGrid.Core.Errors;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

public sealed class BundleStoreTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Bytes_are_stored_under_their_sha256_and_read_back()
    {
        var store = new FileBundleStore(_dir.File("bundles"));
        var bytes = RandomNumberGenerator.GetBytes(10_000);
        var stored = await store.PutAsync(bytes, Ct);
        stored.Sha256.ShouldBe(Convert.ToHexStringLower(SHA256.HashData(bytes)));
        stored.Size.ShouldBe(10_000);
        stored.Code.ShouldBe("bundle://sha256/" + stored.Sha256);
        File.Exists(Path.Combine(_dir.Path, "bundles", "sha256", stored.Sha256[..2], stored.Sha256)).ShouldBeTrue();
        (await store.GetAsync(stored.Sha256, Ct)).ShouldBe(bytes);
    }

    [Fact]
    public async Task Storing_the_same_bytes_twice_or_concurrently_is_idempotent()
    {
        var store = new FileBundleStore(_dir.File("bundles"));
        var bytes = RandomNumberGenerator.GetBytes(50_000);
        var refs = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => store.PutAsync(bytes, Ct), Ct)));
        refs.Select(r => r.Sha256).Distinct().Count().ShouldBe(1);
        var dir = Path.Combine(_dir.Path, "bundles", "sha256", refs[0].Sha256[..2]);
        Directory.GetFiles(dir).ShouldBe([Path.Combine(dir, refs[0].Sha256)]); // no temp files left behind
        (await store.GetAsync(refs[0].Sha256, Ct)).ShouldBe(bytes);
    }

    [Fact]
    public async Task Unknown_hash_is_null_and_a_malformed_one_is_a_400()
    {
        var store = new FileBundleStore(_dir.File("bundles"));
        (await store.GetAsync(new string('a', 64), Ct)).ShouldBeNull();
        (await Should.ThrowAsync<PolicyGridException>(() => store.GetAsync("../../etc/passwd", Ct))).Status.ShouldBe(400);
        (await Should.ThrowAsync<PolicyGridException>(() => store.GetAsync(new string('A', 64), Ct))).Status.ShouldBe(400);
    }
}

public sealed class BundleStoreCrashLeftoverTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Temp_files_of_uploads_cut_short_by_a_crash_are_removed_at_start_and_fresh_ones_kept()
    {
        // A server killed mid-upload left its temp file (up to a whole archive) in the bundle directory for good.
        var shard = Directory.CreateDirectory(Path.Combine(_dir.Path, "bundles", "sha256", "ab")).FullName;
        var abandoned = Path.Combine(shard, $".ab{new string('0', 62)}.{Guid.NewGuid():N}.tmp");
        var inProgress = Path.Combine(shard, $".ab{new string('1', 62)}.{Guid.NewGuid():N}.tmp");
        var stored = Path.Combine(shard, "ab" + new string('2', 62));
        foreach (var file in new[] { abandoned, inProgress, stored }) File.WriteAllBytes(file, new byte[1000]);
        File.SetLastWriteTimeUtc(abandoned, DateTime.UtcNow.AddHours(-2));
        File.SetLastWriteTimeUtc(stored, DateTime.UtcNow.AddHours(-2));

        _ = new FileBundleStore(_dir.File("bundles"));

        File.Exists(abandoned).ShouldBeFalse();
        File.Exists(inProgress).ShouldBeTrue(); // another process may still be writing it
        File.Exists(stored).ShouldBeTrue();
    }
}
