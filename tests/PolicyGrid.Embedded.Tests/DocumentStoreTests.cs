using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

public sealed class DocumentStoreTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly SqliteDocumentStore _store;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public DocumentStoreTests() => _store = new SqliteDocumentStore(new SqliteDatabase(_dir.File("policygrid.db")));

    public void Dispose() => _dir.Dispose();

    private static JsonObject Doc(string json) => JsonNode.Parse(json)!.AsObject();

    [Fact]
    public async Task Created_document_reads_back_with_its_revision()
    {
        var created = await _store.CreateAsync("policies", "p1", Doc("""{"name":"a","n":1}"""), Ct);
        var read = await _store.GetAsync("policies", "p1", Ct);
        read.ShouldNotBeNull();
        read.Body["name"]!.GetValue<string>().ShouldBe("a");
        read.Revision.ShouldBe(created.Revision);
        (await _store.GetAsync("policies", "missing", Ct)).ShouldBeNull();
    }

    [Fact]
    public async Task Creating_an_existing_id_is_a_409_and_keeps_the_original()
    {
        await _store.CreateAsync("policies", "p1", Doc("""{"v":1}"""), Ct);
        var e = await Should.ThrowAsync<PolicyGridException>(() => _store.CreateAsync("policies", "p1", Doc("""{"v":2}"""), Ct));
        e.Status.ShouldBe(409);
        e.Code.ShouldBe("conflict");
        (await _store.GetAsync("policies", "p1", Ct))!.Body["v"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task Replace_checks_the_revision_and_moves_it_forward()
    {
        var v1 = await _store.CreateAsync("policies", "p1", Doc("""{"v":1}"""), Ct);
        var v2 = await _store.ReplaceAsync("policies", "p1", Doc("""{"v":2}"""), v1.Revision, Ct);
        v2.Revision.ShouldNotBe(v1.Revision);

        var stale = await Should.ThrowAsync<PolicyGridException>(() => _store.ReplaceAsync("policies", "p1", Doc("""{"v":3}"""), v1.Revision, Ct));
        stale.Status.ShouldBe(409);
        (await _store.GetAsync("policies", "p1", Ct))!.Body["v"]!.GetValue<int>().ShouldBe(2);

        // An HTTP ETag arrives quoted; both spellings mean the same revision.
        var v3 = await _store.ReplaceAsync("policies", "p1", Doc("""{"v":3}"""), $"\"{v2.Revision}\"", Ct);
        var v4 = await _store.ReplaceAsync("policies", "p1", Doc("""{"v":4}"""), null, Ct);
        v4.Revision.ShouldNotBe(v3.Revision);
    }

    [Fact]
    public async Task Replacing_a_missing_document_is_a_404()
    {
        var e = await Should.ThrowAsync<PolicyGridException>(() => _store.ReplaceAsync("policies", "nope", Doc("{}"), null, Ct));
        e.Status.ShouldBe(404);
        (await _store.GetAsync("policies", "nope", Ct)).ShouldBeNull();
    }

    [Fact]
    public async Task A_write_that_finds_the_document_other_than_expected_says_so_in_the_words_every_store_uses()
    {
        // An update racing a delete reaches the user with the store's own words: they were "'nope' not found in policies"
        // here and "policy 'nope' does not exist" on Dapr.
        (await Should.ThrowAsync<PolicyGridException>(() => _store.ReplaceAsync("policies", "nope", Doc("{}"), null, Ct)))
            .Message.ShouldBe("policy 'nope' does not exist (deleted meanwhile, or never stored)");
        var v1 = await _store.CreateAsync("graph_executions", "g1", Doc("{}"), Ct);
        (await Should.ThrowAsync<PolicyGridException>(() => _store.CreateAsync("graph_executions", "g1", Doc("{}"), Ct)))
            .Message.ShouldBe("graph execution 'g1' already exists");
        var v2 = await _store.ReplaceAsync("graph_executions", "g1", Doc("{}"), null, Ct);
        (await Should.ThrowAsync<PolicyGridException>(() => _store.DeleteAsync("graph_executions", "g1", $"\"{v1.Revision}\"", Ct)))
            .Message.ShouldBe($"graph execution 'g1' has changed since revision '\"{v1.Revision}\"' (If-Match; it is at '{v2.Revision}' now); read it again and retry");
    }

    [Fact]
    public async Task Delete_returns_the_deleted_document_and_honours_the_revision()
    {
        var v1 = await _store.CreateAsync("jobs", "j1", Doc("""{"state":"done"}"""), Ct);
        var wrong = await Should.ThrowAsync<PolicyGridException>(() => _store.DeleteAsync("jobs", "j1", "999999", Ct));
        wrong.Status.ShouldBe(409);
        var deleted = await _store.DeleteAsync("jobs", "j1", v1.Revision, Ct);
        deleted.ShouldNotBeNull();
        deleted.Body["state"]!.GetValue<string>().ShouldBe("done");
        (await _store.GetAsync("jobs", "j1", Ct)).ShouldBeNull();
        (await _store.DeleteAsync("jobs", "j1", null, Ct)).ShouldBeNull();
    }

    [Fact]
    public async Task A_recreated_document_never_reuses_an_old_etag()
    {
        var first = await _store.CreateAsync("jobs", "j1", Doc("{}"), Ct);
        await _store.DeleteAsync("jobs", "j1", null, Ct);
        await _store.CreateAsync("jobs", "j1", Doc("{}"), Ct);
        var e = await Should.ThrowAsync<PolicyGridException>(() => _store.ReplaceAsync("jobs", "j1", Doc("{}"), first.Revision, Ct));
        e.Status.ShouldBe(409);
    }

    [Fact]
    public async Task Upsert_creates_then_replaces()
    {
        var a = await _store.UpsertAsync("jobs", "j1", Doc("""{"p":1}"""), Ct);
        var b = await _store.UpsertAsync("jobs", "j1", Doc("""{"p":2}"""), Ct);
        b.Revision.ShouldNotBe(a.Revision);
        (await _store.GetAsync("jobs", "j1", Ct))!.Body["p"]!.GetValue<int>().ShouldBe(2);
    }

    [Theory]
    [InlineData("Policies")]
    [InlineData("doc; DROP TABLE x")]
    [InlineData("a\"b")]
    [InlineData("")]
    public async Task Unsafe_collection_names_are_refused(string name)
    {
        var e = await Should.ThrowAsync<PolicyGridException>(() => _store.GetAsync(name, "x", Ct));
        e.Status.ShouldBe(400);
    }

    [Fact]
    public async Task Collections_are_separate()
    {
        await _store.CreateAsync("policies", "same", Doc("""{"c":"p"}"""), Ct);
        await _store.CreateAsync("graphs", "same", Doc("""{"c":"g"}"""), Ct);
        (await _store.GetAsync("graphs", "same", Ct))!.Body["c"]!.GetValue<string>().ShouldBe("g");
    }

    [Fact]
    public async Task Many_concurrent_writers_all_land_and_exactly_one_create_wins()
    {
        var creates = Enumerable.Range(0, 16).Select(i => Task.Run(async () =>
        {
            try { await _store.CreateAsync("policies", "contested", Doc($$"""{"writer":{{i}}}"""), Ct); return true; }
            catch (PolicyGridException e) when (e.Status == 409) { return false; }
        }, Ct));
        var upserts = Enumerable.Range(0, 64).Select(i => Task.Run(() => _store.UpsertAsync("jobs", $"j{i}", Doc($$"""{"i":{{i}}}"""), Ct), Ct));
        var winners = await Task.WhenAll(creates);
        await Task.WhenAll(upserts);
        winners.Count(w => w).ShouldBe(1);
        (await _store.QueryAsync("jobs", DocumentQuery.All(), Ct)).Count.ShouldBe(64);
    }

    [Fact]
    public async Task Written_data_is_there_after_reopening_the_file()
    {
        await _store.CreateAsync("policies", "p1", Doc("""{"x":"y"}"""), Ct);
        var reopened = new SqliteDocumentStore(new SqliteDatabase(_dir.File("policygrid.db")));
        (await reopened.GetAsync("policies", "p1", Ct))!.Body["x"]!.GetValue<string>().ShouldBe("y");
    }

    [Fact]
    public async Task AddEmbeddedStorage_registers_the_ports_on_one_data_directory()
    {
        var services = new ServiceCollection().AddEmbeddedStorage(_dir.Path).BuildServiceProvider();
        var docs = services.GetRequiredService<IDocumentStore>();
        docs.ShouldBeOfType<SqliteDocumentStore>();
        services.GetRequiredService<IContextStore>().ShouldBeOfType<SqliteContextStore>();
        var bundles = services.GetRequiredService<IBundleStore>();
        await docs.CreateAsync("policies", "p", Doc("{}"), Ct);
        var bundle = await bundles.PutAsync(new byte[] { 1, 2, 3 }, Ct);
        File.Exists(_dir.File("policygrid.db")).ShouldBeTrue();
        File.Exists(Path.Combine(_dir.Path, "bundles", "sha256", bundle.Sha256[..2], bundle.Sha256)).ShouldBeTrue();
    }
}
