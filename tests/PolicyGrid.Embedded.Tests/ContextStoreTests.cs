using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Errors;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

public sealed class ContextStoreTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly ManualClock _clock = new(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
    private readonly SqliteDatabase _db;
    private readonly SqliteContextStore _store;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ContextStoreTests()
    {
        _db = new SqliteDatabase(_dir.File("policygrid.db"));
        _store = new SqliteContextStore(_db, _clock);
    }

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Context_round_trips_and_is_replaced()
    {
        (await _store.GetAsync("policy://a", Ct)).ShouldBeNull();
        await _store.SetAsync("policy://a", new JsonObject { ["count"] = 1 }, null, Ct);
        await _store.SetAsync("policy://a", new JsonObject { ["count"] = 2 }, null, Ct);
        (await _store.GetAsync("policy://a", Ct))!["count"]!.GetValue<int>().ShouldBe(2);
        await _store.DeleteAsync("policy://a", Ct);
        (await _store.GetAsync("policy://a", Ct)).ShouldBeNull();
    }

    [Fact]
    public async Task A_write_through_any_store_on_the_file_reaches_the_next_read_of_every_other()
    {
        var other = new SqliteContextStore(new SqliteDatabase(_dir.File("policygrid.db")), _clock);
        (await _store.GetAsync("shared", Ct)).ShouldBeNull();
        (await other.GetAsync("shared", Ct)).ShouldBeNull();
        await other.SetAsync("shared", new JsonObject { ["n"] = 1 }, null, Ct);
        (await _store.GetAsync("shared", Ct))!["n"]!.GetValue<int>().ShouldBe(1);
        await _store.SetAsync("shared", new JsonObject { ["n"] = 2 }, null, Ct);
        (await other.GetAsync("shared", Ct))!["n"]!.GetValue<int>().ShouldBe(2);
        await other.DeleteAsync("shared", Ct);
        (await _store.GetAsync("shared", Ct)).ShouldBeNull();
    }

    [Fact]
    public async Task Reads_are_served_from_memory_until_a_write_to_that_key_and_hand_out_their_own_copy()
    {
        await _store.SetAsync("warm", new JsonObject { ["n"] = 1 }, null, Ct);
        var first = (await _store.GetAsync("warm", Ct))!;
        first["n"] = 99; // a caller changing its copy changes nothing stored or remembered
        (await _store.GetAsync("warm", Ct))!["n"]!.GetValue<int>().ShouldBe(1);

        // Changed behind the store's back (raw SQL, as no PolicyGrid process does): the remembered read stands...
        using (var raw = new SqliteConnection($"Data Source={_db.Path}"))
        {
            raw.Open();
            using var update = raw.CreateCommand();
            update.CommandText = "UPDATE pg_context SET body = '{\"n\":5}' WHERE key = 'warm'";
            update.ExecuteNonQuery().ShouldBe(1);
        }
        (await _store.GetAsync("warm", Ct))!["n"]!.GetValue<int>().ShouldBe(1);
        // ...and a write to another key does not disturb it, while one to this key does.
        await _store.SetAsync("elsewhere", new JsonObject(), null, Ct);
        (await _store.GetAsync("warm", Ct))!["n"]!.GetValue<int>().ShouldBe(1);
        await _store.SetAsync("warm", new JsonObject { ["n"] = 7 }, null, Ct);
        (await _store.GetAsync("warm", Ct))!["n"]!.GetValue<int>().ShouldBe(7);
    }

    [Fact]
    public async Task Context_disappears_when_its_ttl_passes_and_the_row_is_purged()
    {
        await _store.SetAsync("k", new JsonObject { ["v"] = "x" }, TimeSpan.FromSeconds(30), Ct);
        _clock.Advance(TimeSpan.FromSeconds(29));
        (await _store.GetAsync("k", Ct)).ShouldNotBeNull();
        _clock.Advance(TimeSpan.FromSeconds(1));
        (await _store.GetAsync("k", Ct)).ShouldBeNull();
        CountRows().ShouldBe(0);
    }

    [Fact]
    public async Task Writes_sweep_other_expired_rows_and_keep_live_ones()
    {
        await _store.SetAsync("old", new JsonObject(), TimeSpan.FromSeconds(1), Ct);
        await _store.SetAsync("forever", new JsonObject(), null, Ct);
        _clock.Advance(TimeSpan.FromMinutes(1));
        await _store.SetAsync("new", new JsonObject(), TimeSpan.FromMinutes(5), Ct);
        CountRows().ShouldBe(2);
        (await _store.GetAsync("forever", Ct)).ShouldNotBeNull();
    }

    [Fact]
    public async Task Setting_again_without_ttl_removes_the_expiry()
    {
        await _store.SetAsync("k", new JsonObject(), TimeSpan.FromSeconds(1), Ct);
        await _store.SetAsync("k", new JsonObject { ["kept"] = true }, null, Ct);
        _clock.Advance(TimeSpan.FromDays(1));
        (await _store.GetAsync("k", Ct)).ShouldNotBeNull();
    }

    [Fact]
    public async Task Bad_input_is_a_400()
    {
        (await Should.ThrowAsync<PolicyGridException>(() => _store.SetAsync("", new JsonObject(), null, Ct))).Status.ShouldBe(400);
        (await Should.ThrowAsync<PolicyGridException>(() => _store.SetAsync("k", new JsonObject(), TimeSpan.Zero, Ct))).Status.ShouldBe(400);
        (await _store.GetAsync("k", Ct)).ShouldBeNull();
    }

    private long CountRows()
    {
        using var connection = new SqliteConnection($"Data Source={_db.Path}");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM pg_context";
        return (long)command.ExecuteScalar()!;
    }
}

/// <summary>A clock the test moves by hand, so TTL tests never sleep.</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;
    public override DateTimeOffset GetUtcNow() => _now;
    public void Advance(TimeSpan by) => _now += by;
}
