using Microsoft.Data.Sqlite;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

public sealed class BatchAndRevisionTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly SqliteDatabase _db;
    private readonly SqliteDocumentStore _store;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public BatchAndRevisionTests()
    {
        _db = new SqliteDatabase(_dir.File("policygrid.db"));
        _store = new SqliteDocumentStore(_db);
    }

    public void Dispose() => _dir.Dispose();

    private static KeyValuePair<string, JsonObject> Doc(string id, int n) => KeyValuePair.Create(id, new JsonObject { ["n"] = n });

    private Task CreateMany(string collection, KeyValuePair<string, JsonObject>[] documents) =>
        _store.CreateManyAsync(collection, documents, static d => d.Key, static (w, d) => d.Value.WriteTo(w), Ct);

    [Theory]
    [InlineData("an array")]
    [InlineData("a number")]
    [InlineData("an unfinished object")]
    [InlineData("nothing")]
    public async Task A_batch_whose_writer_does_not_write_one_object_is_refused_and_stores_nothing(string what)
    {
        Action<System.Text.Json.Utf8JsonWriter, int> write = what switch
        {
            "an array" => (w, _) => { w.WriteStartArray(); w.WriteEndArray(); },
            "a number" => (w, n) => w.WriteNumberValue(n),
            "an unfinished object" => (w, _) => w.WriteStartObject(),
            _ => (_, _) => { },
        };
        // The first item is a good object; the second is what is named.
        var e = await Should.ThrowAsync<ArgumentException>(() => _store.CreateManyAsync("decisions", [1, 2], n => $"x{n}", (w, n) =>
        {
            if (n == 2) write(w, n);
            else
            {
                w.WriteStartObject();
                w.WriteEndObject();
            }
        }, Ct));
        e.Message.ShouldContain("'x2'");
        e.Message.ShouldContain("not one JSON object");
        (await _store.GetAsync("decisions", "x1", Ct)).ShouldBeNull();
    }

    [Fact]
    public async Task A_batch_stores_every_document_with_its_own_new_revision()
    {
        var before = await _store.CreateAsync("decisions", "first", new JsonObject(), Ct);
        await CreateMany("decisions", [Doc("a", 1), Doc("b", 2), Doc("c", 3)]);
        var read = new[] { "a", "b", "c" }.Select(id => _store.GetAsync("decisions", id, Ct).Result!).ToList();
        read.Select(d => d.Body["n"]!.GetValue<int>()).ShouldBe([1, 2, 3]);
        var revisions = read.Select(d => long.Parse(d.Revision)).ToList();
        revisions.ShouldBeUnique();
        revisions.ShouldAllBe(r => r > long.Parse(before.Revision));
        // The sequence moved past the batch: the next write gets a revision no batch entry has.
        var after = await _store.CreateAsync("decisions", "last", new JsonObject(), Ct);
        long.Parse(after.Revision).ShouldBeGreaterThan(revisions.Max());
    }

    [Fact]
    public async Task A_batch_with_an_existing_id_is_a_409_and_stores_nothing()
    {
        await _store.CreateAsync("decisions", "b", new JsonObject { ["n"] = 0 }, Ct);
        var e = await Should.ThrowAsync<PolicyGridException>(() => CreateMany("decisions", [Doc("a", 1), Doc("b", 2)]));
        e.Status.ShouldBe(409);
        (await _store.GetAsync("decisions", "a", Ct)).ShouldBeNull();
        (await _store.GetAsync("decisions", "b", Ct))!.Body["n"]!.GetValue<int>().ShouldBe(0);
    }

    [Fact]
    public async Task A_batch_is_stored_as_text_queryable_like_any_document_and_leaves_no_lock_behind()
    {
        await CreateMany("decisions", [Doc("a", 1), Doc("b", 2)]);
        await Should.ThrowAsync<PolicyGridException>(() => CreateMany("decisions", [Doc("c", 3), Doc("a", 4)])); // 409
        await CreateMany("decisions", [Doc("d", 5)]);

        await using var connection = await _db.OpenAsync(Ct);
        using (var command = connection.CreateCommand())
        {
            // JSON text, as a bound string stores it: what the query pushdown's JSON functions read.
            command.CommandText = "SELECT group_concat(id || ':' || typeof(body) || ':' || body, ' ') FROM (SELECT * FROM doc_decisions ORDER BY id)";
            command.ExecuteScalar().ShouldBe("""a:text:{"n":1} b:text:{"n":2} d:text:{"n":5}""");
        }
        var found = await _store.QueryAsync("decisions", new Core.Ports.DocumentQuery(Core.Querying.FilterParser.Parse(new JsonObject { ["n"] = new JsonObject { ["$gte"] = 2 } }), [], 0, 10), Ct);
        found.Select(d => d.Id).Order().ShouldBe(["b", "d"]);
        // The batches' connection stays open between batches, outside any transaction: another writer gets in at once.
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "PRAGMA busy_timeout=0; BEGIN IMMEDIATE; COMMIT;";
            command.ExecuteNonQuery();
        }
    }

    [Fact]
    public async Task The_revision_alone_follows_writes_and_deletes()
    {
        (await _store.GetRevisionAsync("policies", "p", Ct)).ShouldBeNull();
        var created = await _store.CreateAsync("policies", "p", new JsonObject { ["v"] = 1 }, Ct);
        (await _store.GetRevisionAsync("policies", "p", Ct)).ShouldBe(created.Revision);
        var replaced = await _store.ReplaceAsync("policies", "p", new JsonObject { ["v"] = 2 }, null, Ct);
        (await _store.GetRevisionAsync("policies", "p", Ct)).ShouldBe(replaced.Revision);
        await _store.DeleteAsync("policies", "p", null, Ct);
        (await _store.GetRevisionAsync("policies", "p", Ct)).ShouldBeNull();
    }

    [Fact]
    public async Task Every_open_connection_syncs_fully_even_when_the_pool_reuses_it()
    {
        // Pragmas are set once per pooled handle; a reused handle must still have them.
        for (var i = 0; i < 5; i++)
        {
            await using var connection = await _db.OpenAsync(Ct);
            using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA synchronous";
            ((long)command.ExecuteScalar()!).ShouldBe(2L); // FULL
            command.CommandText = "PRAGMA foreign_keys";
            ((long)command.ExecuteScalar()!).ShouldBe(1L);
            command.CommandText = "PRAGMA busy_timeout";
            ((long)command.ExecuteScalar()!).ShouldBe(30000L);
        }
    }

    [Fact]
    public async Task Context_writes_commit_without_a_sync_each_on_handles_of_their_own_and_leave_the_others_syncing_fully()
    {
        var contexts = new SqliteContextStore(_db);
        var held = new List<SqliteConnection>();
        try
        {
            // Interleaved, with ordinary connections held open meanwhile, so the pool has to hand out several.
            for (var i = 0; i < 5; i++)
            {
                await contexts.SetAsync("k" + i, new JsonObject { ["n"] = i }, null, Ct);
                held.Add(await _db.OpenAsync(Ct));
            }
            foreach (var connection in held)
            {
                using var command = connection.CreateCommand();
                command.CommandText = "PRAGMA synchronous";
                ((long)command.ExecuteScalar()!).ShouldBe(2L); // FULL: a context write never leaves its pragma behind
            }
        }
        finally
        {
            foreach (var connection in held) await connection.DisposeAsync();
        }
        for (var i = 0; i < 5; i++) (await contexts.GetAsync("k" + i, Ct))!["n"]!.GetValue<int>().ShouldBe(i);
    }

    [Fact]
    public async Task Every_committed_write_changes_its_collections_count_and_only_that()
    {
        var seen = new List<long> { _store.ChangesTo("policies") };
        async Task Then(Func<Task> write)
        {
            await write();
            seen.Add(_store.ChangesTo("policies"));
            seen[^1].ShouldNotBe(seen[^2]);
        }
        await Then(() => _store.CreateAsync("policies", "p", new JsonObject { ["v"] = 1 }, Ct));
        await Then(() => _store.ReplaceAsync("policies", "p", new JsonObject { ["v"] = 2 }, null, Ct));
        await Then(() => _store.UpsertAsync("policies", "p", new JsonObject { ["v"] = 3 }, Ct));
        await Then(() => CreateMany("policies", [Doc("q", 1)]));
        await Then(() => _store.DeleteAsync("policies", "p", null, Ct));

        // Reads, writes to other collections and refused writes leave the count alone.
        var settled = _store.ChangesTo("policies");
        await _store.GetAsync("policies", "q", Ct);
        await _store.CreateAsync("decisions", "d", new JsonObject(), Ct);
        await Should.ThrowAsync<PolicyGridException>(() => _store.CreateAsync("policies", "q", new JsonObject(), Ct));
        _store.ChangesTo("policies").ShouldBe(settled);
    }

    [Fact]
    public async Task Stores_on_the_same_file_see_each_others_writes_in_the_count()
    {
        var other = new SqliteDocumentStore(new SqliteDatabase(_dir.File("policygrid.db")));
        var before = _store.ChangesTo("policies");
        await other.CreateAsync("policies", "p", new JsonObject(), Ct);
        _store.ChangesTo("policies").ShouldNotBe(before);
    }
}
