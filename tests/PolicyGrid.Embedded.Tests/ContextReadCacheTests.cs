using System.Text.Json.Nodes;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

/// <summary>Context keys come from callers (<c>context_key</c>): what the read cache remembers must stay bounded, and stay right.</summary>
public sealed class ContextReadCacheTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_write_to_a_key_makes_its_remembered_read_stale_whatever_other_keys_were_written()
    {
        var cache = new ContextReadCache();
        cache.Remember("k", cache.Stamp("k"), "{\"count\":1}", null);
        for (var i = 0; i < 250_000; i++) cache.Changed("request-" + i); // keys sharing k's slot only cost a re-read
        var stamp = cache.Stamp("k");
        cache.Remember("k", stamp, "{\"count\":1}", null);
        cache.TryGet("k", 0, out var body).ShouldBeTrue();
        body.ShouldBe("{\"count\":1}");
        cache.Changed("k");
        cache.TryGet("k", 0, out _).ShouldBeFalse();
        cache.Remember("k", stamp, "{\"count\":1}", null); // a read stamped before the write
        cache.TryGet("k", 0, out _).ShouldBeFalse();
    }

    [Fact]
    public void Large_bodies_are_kept_within_the_character_budget_and_one_too_large_is_not_kept()
    {
        var cache = new ContextReadCache();
        var body = new string('x', 1 << 20);
        for (var i = 0; i < 100; i++) cache.Remember("big-" + i, cache.Stamp("big-" + i), body, null);
        cache.Size.Chars.ShouldBeLessThanOrEqualTo(ContextReadCache.MaxCachedChars);
        cache.Size.Entries.ShouldBeLessThanOrEqualTo((int)(ContextReadCache.MaxCachedChars / body.Length));
        cache.TryGet("big-99", 0, out var kept).ShouldBeTrue();
        kept.ShouldBe(body);

        var huge = new string('y', (int)(ContextReadCache.MaxCachedChars / 8));
        cache.Remember("huge", cache.Stamp("huge"), huge, null);
        cache.TryGet("huge", 0, out _).ShouldBeFalse();
    }

    [Fact]
    public void A_read_stamped_before_the_cache_forgot_everything_is_never_served()
    {
        var cache = new ContextReadCache();
        var stale = cache.Stamp("k");
        var filler = new string('x', 1 << 20);
        for (var i = 0; i < 40; i++) cache.Remember("other-" + i, cache.Stamp("other-" + i), filler, null); // past the budget: forgets everything
        cache.Remember("k", stale, "{\"count\":1}", null);
        cache.TryGet("k", 0, out _).ShouldBeFalse();

        cache.Remember("k", cache.Stamp("k"), "{\"count\":2}", null);
        cache.TryGet("k", 0, out var body).ShouldBeTrue();
        body.ShouldBe("{\"count\":2}");
        cache.Changed("k");
        cache.TryGet("k", 0, out _).ShouldBeFalse();
    }

    [Fact]
    public async Task The_store_answers_the_latest_context_across_the_cache_forgetting()
    {
        var db = new SqliteDatabase(_dir.File("policygrid.db"));
        var store = new SqliteContextStore(db);
        await store.SetAsync("counter", new JsonObject { ["count"] = 1 }, null, Ct);
        (await store.GetAsync("counter", Ct))!["count"]!.GetValue<int>().ShouldBe(1);
        var filler = new string('x', 1 << 20);
        for (var i = 0; i < 40; i++) db.ContextCache.Remember("flood-" + i, db.ContextCache.Stamp("flood-" + i), filler, null);
        await store.SetAsync("counter", new JsonObject { ["count"] = 2 }, null, Ct);
        (await store.GetAsync("counter", Ct))!["count"]!.GetValue<int>().ShouldBe(2);
        (await store.GetAsync("counter", Ct))!["count"]!.GetValue<int>().ShouldBe(2);
    }
}
