using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

/// <summary>
/// The hot-path writer behind context writes: writes that arrive together commit together, each has committed
/// when its task completes, one that fails in a group fails alone, and the connection is let go when idle.
/// </summary>
public sealed class SqliteWriterTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly SqliteDatabase _db;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public SqliteWriterTests() => _db = new SqliteDatabase(_dir.File("policygrid.db"));

    public void Dispose() => _dir.Dispose();

    private long CountRows(string table)
    {
        using var connection = new SqliteConnection($"Data Source={_db.Path};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT count(*) FROM {table}";
        return (long)command.ExecuteScalar()!;
    }

    [Fact]
    public async Task Writes_that_arrive_together_commit_together_and_each_is_committed_when_it_completes()
    {
        // A clock that stands still: the sweep of expired rows (at most one a second) runs with the first write only.
        var store = new SqliteContextStore(_db, new ManualClock(DateTimeOffset.UnixEpoch.AddYears(56)));
        await store.SetAsync("warm", new JsonObject(), null, Ct);
        // One write holds the writer (its parameters are set only once it is released) while 200 more queue.
        using var binding = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var holding = Task.Run(() => _db.Writer.WriteAsync("INSERT INTO pg_context(key, body) VALUES ($key, '{}')", p =>
        {
            binding.Set();
            release.Wait(Ct);
            SqliteWriter.Set(p, "$key", "holder");
        }), Ct);
        binding.Wait(Ct);
        var before = _db.Writer.Commits;
        var writes = Enumerable.Range(0, 200).Select(i => store.SetAsync($"key-{i}", new JsonObject { ["i"] = i }, null, Ct)).ToList();
        writes.ShouldAllBe(w => !w.IsCompleted);
        release.Set();
        await holding;
        await Task.WhenAll(writes);
        (_db.Writer.Commits - before).ShouldBe(2, "the holder's commit, then one for the 200 that queued behind it");
        // Seen through a connection of its own (not the writer's, not the read cache): every write is in the file.
        CountRows("pg_context").ShouldBe(202);
        var fresh = new SqliteContextStore(new SqliteDatabase(_db.Path));
        for (var i = 0; i < 200; i += 37) (await fresh.GetAsync($"key-{i}", Ct))!["i"]!.GetValue<int>().ShouldBe(i);
    }

    [Fact]
    public async Task A_write_that_fails_in_a_group_fails_alone()
    {
        using (var connection = new SqliteConnection($"Data Source={_db.Path};Pooling=False"))
        {
            connection.Open();
            using var create = connection.CreateCommand();
            create.CommandText = "CREATE TABLE t (x INTEGER NOT NULL CHECK (x >= 0))";
            create.ExecuteNonQuery();
        }
        const string insert = "INSERT INTO t(x) VALUES ($x)";
        var writes = Enumerable.Range(-1, 40).Select(x => _db.Writer.WriteAsync(insert, p => SqliteWriter.Set(p, "$x", x == -1 ? -1 : x))).ToList();
        // The bad one (x = -1) commits alone, first: the others queue behind it and commit as a group after it failed.
        var failure = await Should.ThrowAsync<SqliteException>(writes[0]);
        failure.Message.ShouldContain("CHECK constraint failed");
        await Task.WhenAll(writes.Skip(1));
        CountRows("t").ShouldBe(39);

        // The first of these commits alone; the bad one (the 16th) is in the group queued behind it, which fails
        // as a whole and is then tried write by write.
        var mixed = Enumerable.Range(0, 30).Select(x => _db.Writer.WriteAsync(insert, p => SqliteWriter.Set(p, "$x", x == 15 ? -5 : 100 + x))).ToList();
        await Should.ThrowAsync<SqliteException>(mixed[15]);
        await Task.WhenAll(mixed.Where((_, i) => i != 15));
        CountRows("t").ShouldBe(68);
        _db.Writer.IsOpen.ShouldBeTrue(); // a failed statement does not cost the connection
    }

    [Fact]
    public async Task The_connection_is_let_go_after_a_second_without_writes_and_taken_again_by_the_next()
    {
        var store = new SqliteContextStore(_db);
        await store.SetAsync("a", new JsonObject { ["n"] = 1 }, null, Ct);
        _db.Writer.IsOpen.ShouldBeTrue();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (_db.Writer.IsOpen && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(100, Ct);
        _db.Writer.IsOpen.ShouldBeFalse();
        await store.SetAsync("a", new JsonObject { ["n"] = 2 }, null, Ct);
        (await new SqliteContextStore(new SqliteDatabase(_db.Path)).GetAsync("a", Ct))!["n"]!.GetValue<int>().ShouldBe(2);
    }
}
