using System.Text.Json;
using System.Text.Json.Nodes;
using Dapr;
using Dapr.Client;
using Grpc.Core;
using NSubstitute;
using NSubstitute.ExceptionExtensions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Dapr.Documents;
using Shouldly;
using SortDirection = PolicyGrid.Core.Ports.SortDirection;

namespace PolicyGrid.Dapr.Tests.Adapters;

public sealed class DaprStateDocumentStoreTests
{
    private const string Store = DaprNames.Components.DocumentStore;
    private readonly FakeStateStore state = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static JsonObject Policy(string name, string version = "1.0", string status = "active") =>
        new() { ["name"] = name, ["version"] = version, ["status"] = status, ["tags"] = "net" };

    [Fact]
    public async Task Create_writes_collection_and_id_key_with_first_write_concurrency()
    {
        var stored = await state.Store().CreateAsync(Collections.Policies, "ip:1.0-beta", Policy("ip"), Ct);

        await state.Client.Received(1).TrySaveStateAsync(Store, "policies/ip:1.0-beta",
            Arg.Is<StateDocument>(d => d.Collection == "policies" && d.Id == "ip:1.0-beta" && d.Doc["name"]!.GetValue<string>() == "ip"),
            "", Arg.Is<StateOptions>(o => o.Concurrency == ConcurrencyMode.FirstWrite && o.Consistency == ConsistencyMode.Strong),
            Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>());
        stored.Revision.ShouldNotBeNullOrEmpty();
        (await state.Store().GetAsync(Collections.Policies, "ip:1.0-beta", Ct))!.Revision.ShouldBe(stored.Revision);
    }

    [Theory]
    [InlineData(DocumentQueryMode.KeyIndex)]
    [InlineData(DocumentQueryMode.QueryApi)]
    public async Task Every_key_is_one_daprd_accepts_even_for_an_id_holding_its_separator(DocumentQueryMode mode)
    {
        // daprd refuses any state key holding "||" (InvalidArgument), as the fake does: before, every key had one.
        var store = state.WithIdQueries().Store(mode);

        var created = await store.CreateAsync(Collections.Executors, "edge||1", new JsonObject { ["name"] = "edge||1" }, Ct);
        await store.CreateAsync(Collections.Executors, "edge|%7C1", new JsonObject { ["name"] = "other" }, Ct);
        var replaced = await store.ReplaceAsync(Collections.Executors, "edge||1", new JsonObject { ["name"] = "edge||1", ["n"] = 2 }, created.Revision, Ct);
        await store.UpsertAsync(Collections.Jobs, "job||1", new JsonObject { ["status"] = "running" }, Ct);

        (await store.GetAsync(Collections.Executors, "edge||1", Ct))!.Revision.ShouldBe(replaced.Revision);
        (await store.GetAsync(Collections.Executors, "edge|%7C1", Ct))!.Body["name"]!.GetValue<string>().ShouldBe("other");
        (await store.DeleteAsync(Collections.Executors, "edge||1", null, Ct)).ShouldNotBeNull();
        (await store.GetAsync(Collections.Executors, "edge||1", Ct)).ShouldBeNull();
        (await store.GetAsync(Collections.Jobs, "job||1", Ct)).ShouldNotBeNull();
        state.Entries.Keys.ShouldAllBe(k => !k.Contains("||"));
    }

    [Fact]
    public async Task Query_api_mode_writes_documents_as_json_so_the_store_can_query_them()
    {
        // Without contentType application/json daprd hands state.mongodb the bytes, stored as one string: no query matches.
        var store = state.Store(DocumentQueryMode.QueryApi);

        var created = await store.CreateAsync(Collections.Policies, "a:1.0-x", Policy("a"), Ct);
        await store.ReplaceAsync(Collections.Policies, "a:1.0-x", Policy("a", "1.1"), created.Revision, Ct);
        await store.UpsertAsync(Collections.Jobs, "job-1", new JsonObject { ["status"] = "running" }, Ct);
        await store.CreateManyAsync(Collections.Decisions, ["d-1", "d-2"], d => d, static (w, d) => new JsonObject { ["id"] = d }.WriteTo(w), Ct);

        state.ContentTypes.Keys.ShouldBe(["policies/a:1.0-x", "jobs/job-1", "decisions/d-1", "decisions/d-2"], ignoreOrder: true);
        state.ContentTypes.Values.ShouldAllBe(t => t == "application/json");
    }

    [Fact]
    public async Task Query_api_mode_keeps_strings_and_keys_that_start_with_a_dollar_as_they_were_written()
    {
        // state.mongodb writes the value through an aggregation pipeline, where "$5 per call" is a field path (the field
        // vanished) and a "$ref" key an operator (the write failed); each value goes as {"$literal": ...} and stays as sent.
        var store = state.Store(DocumentQueryMode.QueryApi);
        JsonObject Odd(string name) => new()
        {
            ["name"] = name, ["description"] = "$5 per call", ["tags"] = new JsonArray("$cost", "plain"),
            ["policy_input_schema"] = new JsonObject { ["$ref"] = "#/definitions/request", ["$$ROOT"] = "$$NOW" },
        };

        var created = await store.CreateAsync(Collections.Policies, "a:1.0-x", Odd("a"), Ct);
        await store.ReplaceAsync(Collections.Policies, "a:1.0-x", Odd("a2"), created.Revision, Ct);
        await store.UpsertAsync(Collections.Jobs, "job-1", Odd("job"), Ct);
        await store.CreateManyAsync(Collections.Decisions, ["d-1"], d => d, (w, d) => Odd(d).WriteTo(w), Ct);

        JsonNode.DeepEquals((await store.GetAsync(Collections.Policies, "a:1.0-x", Ct))!.Body, Odd("a2")).ShouldBeTrue();
        JsonNode.DeepEquals((await store.GetAsync(Collections.Jobs, "job-1", Ct))!.Body, Odd("job")).ShouldBeTrue();
        JsonNode.DeepEquals((await store.GetAsync(Collections.Decisions, "d-1", Ct))!.Body, Odd("d-1")).ShouldBeTrue();
    }

    [Theory]
    [InlineData(DocumentQueryMode.KeyIndex)]
    [InlineData(DocumentQueryMode.QueryApi)]
    public async Task A_write_daprd_retried_after_it_had_landed_is_the_callers_success_not_a_409(DocumentQueryMode mode)
    {
        // resiliency.yaml retries a state call that timed out; when the first attempt had landed, the retry meets the
        // ETag it left and is refused: the caller's own create, update or delete was answered 409 though it was done.
        var store = state.Store(mode);

        state.LandThenRetry();
        var created = await store.CreateAsync(Collections.Policies, "a:1.0-x", Policy("a"), Ct);
        state.LandThenRetry();
        var replaced = await store.ReplaceAsync(Collections.Policies, "a:1.0-x", Policy("a", "1.1"), created.Revision, Ct);
        state.LandThenRetry();
        var upserted = await store.UpsertAsync(Collections.Jobs, "job-1", new JsonObject { ["status"] = "running" }, Ct);
        (await store.GetAsync(Collections.Policies, "a:1.0-x", Ct))!.Revision.ShouldBe(replaced.Revision);
        (await store.GetAsync(Collections.Jobs, "job-1", Ct))!.Revision.ShouldBe(upserted.Revision);

        state.LandThenRetry();
        (await store.DeleteAsync(Collections.Policies, "a:1.0-x", replaced.Revision, Ct))!.Revision.ShouldBe(replaced.Revision);
        (await store.GetAsync(Collections.Policies, "a:1.0-x", Ct)).ShouldBeNull();

        // Another writer's document is still a duplicate.
        (await Should.ThrowAsync<PolicyGridException>(() => store.CreateAsync(Collections.Jobs, "job-1", new JsonObject(), Ct))).Status.ShouldBe(409);
    }

    [Fact]
    public async Task A_query_answers_integers_as_a_read_does_not_as_the_doubles_mongodb_keeps()
    {
        // state.mongodb answers a query in relaxed extended JSON, an integral double as 2.0: a list said "replicas": 2.0
        // where GET said 2, and a client decoding into an integer refused the list.
        var state = new FakeStateStore().WithIdQueries();
        var store = state.Store(DocumentQueryMode.QueryApi);
        await store.CreateAsync(Collections.Functions, "f", new JsonObject
        {
            ["replicas"] = 2, ["ratio"] = 0.5, ["big"] = 1e20, ["nested"] = new JsonObject { ["list"] = new JsonArray(1, 2.5, -3) },
        }, Ct);

        var listed = (await store.QueryAsync(Collections.Functions, new DocumentQuery(new AndFilter([]), []), Ct)).Single().Body;

        listed.ToJsonString().ShouldBe("""{"replicas":2,"ratio":0.5,"big":1E+20,"nested":{"list":[1,2.5,-3]}}""");
    }

    [Theory]
    [InlineData(Collections.Policies, "policy")]
    [InlineData(Collections.GraphExecutions, "graph execution")]
    [InlineData(Collections.Jobs, "job")]
    public async Task A_duplicate_names_what_kind_of_document_it_is(string collection, string kind)
    {
        var store = state.Store(DocumentQueryMode.QueryApi);
        await store.CreateAsync(collection, "x", new JsonObject(), Ct);

        var e = await Should.ThrowAsync<PolicyGridException>(() => store.CreateAsync(collection, "x", new JsonObject(), Ct));

        e.Message.ShouldStartWith($"{kind} 'x'");
    }

    [Fact]
    public async Task Key_index_mode_writes_documents_as_the_sdk_serialized_them()
    {
        var store = state.Store(DocumentQueryMode.KeyIndex);

        await store.CreateAsync(Collections.Policies, "a:1.0-x", Policy("a"), Ct);
        await store.UpsertAsync(Collections.Jobs, "job-1", new JsonObject { ["status"] = "running" }, Ct);

        state.ContentTypes.Values.ShouldAllBe(t => t == null);
    }

    [Theory]
    [InlineData(DocumentQueryMode.KeyIndex)]
    [InlineData(DocumentQueryMode.QueryApi)]
    public async Task An_upsert_replaces_a_document_that_was_created_as_state_redis_requires(DocumentQueryMode mode)
    {
        // A graph execution is created (first-write) and recorded as finished by an upsert; state.redis refused that
        // upsert (no ETag on a first-written key), so the execution stayed "running" and the upsert was a 502.
        var store = state.Store(mode);
        await store.CreateAsync(Collections.GraphExecutions, "exec-1", new JsonObject { ["status"] = "running" }, Ct);

        var finished = await store.UpsertAsync(Collections.GraphExecutions, "exec-1", new JsonObject { ["status"] = "succeeded" }, Ct);

        var read = await store.GetAsync(Collections.GraphExecutions, "exec-1", Ct);
        read!.Body["status"]!.GetValue<string>().ShouldBe("succeeded");
        read.Revision.ShouldBe(finished.Revision);
        (await store.UpsertAsync(Collections.Jobs, "new-1", new JsonObject { ["status"] = "queued" }, Ct)).Id.ShouldBe("new-1");
    }

    [Fact]
    public async Task A_document_nested_deeper_than_the_limit_is_a_400_and_nothing_reaches_the_sidecar()
    {
        var deep = Policy("deep");
        JsonNode leaf = 1;
        for (var i = 0; i < PolicyGrid.Core.Documents.DocumentDepth.MaxStored; i++) leaf = new JsonObject { ["a"] = leaf };
        deep["metadata"] = leaf;
        var refused = await Should.ThrowAsync<PolicyGridException>(() => state.Store().CreateAsync(Collections.Policies, "deep:1.0-beta", deep, Ct));
        refused.Status.ShouldBe(400);
        refused.Message.ShouldContain("metadata.a.a");
        state.Client.ReceivedCalls().ShouldBeEmpty();
    }

    [Fact]
    public async Task Create_of_an_existing_id_is_a_409_and_keeps_the_first_document()
    {
        var store = state.Store();
        await store.CreateAsync(Collections.Policies, "ip:1.0-beta", Policy("ip"), Ct);

        var e = await Should.ThrowAsync<PolicyGridException>(() => store.CreateAsync(Collections.Policies, "ip:1.0-beta", Policy("other"), Ct));

        e.Status.ShouldBe(409);
        e.Code.ShouldBe(ErrorCodes.Conflict);
        (await store.GetAsync(Collections.Policies, "ip:1.0-beta", Ct))!.Body["name"]!.GetValue<string>().ShouldBe("ip");
    }

    [Fact]
    public async Task Create_that_a_store_refuses_with_a_plain_error_is_still_a_409_when_the_key_exists()
    {
        state.Put("policies/ip:1.0-beta", new StateDocument("policies", "ip:1.0-beta", "r1", Policy("ip")));
        state.Client.TrySaveStateAsync(Store, "policies/ip:1.0-beta", Arg.Any<StateDocument>(), "", Arg.Any<StateOptions>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(new DaprException("State operation failed", new RpcException(new Status(StatusCode.Internal, "failed to set key policies/ip:1.0-beta"))));

        var e = await Should.ThrowAsync<PolicyGridException>(() => state.Store(DocumentQueryMode.QueryApi).CreateAsync(Collections.Policies, "ip:1.0-beta", Policy("x"), Ct));

        e.Status.ShouldBe(409);
    }

    [Fact]
    public async Task Replace_sends_the_stores_etag_and_answers_a_new_revision()
    {
        var store = state.Store();
        var created = await store.CreateAsync(Collections.Policies, "ip:1.0-beta", Policy("ip"), Ct);
        var etag = state.Entries["policies/ip:1.0-beta"].ETag;

        var replaced = await store.ReplaceAsync(Collections.Policies, "ip:1.0-beta", Policy("ip", status: "retired"), created.Revision, Ct);

        await state.Client.Received(1).TrySaveStateAsync(Store, "policies/ip:1.0-beta", Arg.Any<StateDocument>(), etag,
            Arg.Is<StateOptions>(o => o.Concurrency == ConcurrencyMode.FirstWrite), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>());
        replaced.Revision.ShouldNotBe(created.Revision);
        (await store.GetAsync(Collections.Policies, "ip:1.0-beta", Ct))!.Body["status"]!.GetValue<string>().ShouldBe("retired");
    }

    [Fact]
    public async Task Replace_with_a_stale_if_match_is_a_409_and_writes_nothing()
    {
        var store = state.Store();
        var created = await store.CreateAsync(Collections.Policies, "ip:1.0-beta", Policy("ip"), Ct);
        await store.ReplaceAsync(Collections.Policies, "ip:1.0-beta", Policy("ip", status: "deprecated"), created.Revision, Ct);
        state.Client.ClearReceivedCalls();

        var e = await Should.ThrowAsync<PolicyGridException>(() => store.ReplaceAsync(Collections.Policies, "ip:1.0-beta", Policy("ip", status: "retired"), created.Revision, Ct));

        e.Status.ShouldBe(409);
        e.Message.ShouldBe($"policy 'ip:1.0-beta' has changed since revision '{created.Revision}' (If-Match; it is at '{(await store.GetAsync(Collections.Policies, "ip:1.0-beta", Ct))!.Revision}' now); read it again and retry");
        await state.Client.DidNotReceiveWithAnyArgs().TrySaveStateAsync<StateDocument>(default!, default!, default!, default!, default, default, default);
    }

    [Fact]
    public async Task Replace_that_loses_an_etag_race_is_a_409()
    {
        var store = state.Store();
        await store.CreateAsync(Collections.Policies, "ip:1.0-beta", Policy("ip"), Ct);
        state.Client.TrySaveStateAsync(Store, "policies/ip:1.0-beta", Arg.Any<StateDocument>(), Arg.Is<string>(s => s.Length > 0), Arg.Any<StateOptions>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(false);

        var e = await Should.ThrowAsync<PolicyGridException>(() => store.ReplaceAsync(Collections.Policies, "ip:1.0-beta", Policy("ip"), null, Ct));

        e.Status.ShouldBe(409);
    }

    [Fact]
    public async Task Replace_of_a_missing_document_is_a_404()
    {
        var e = await Should.ThrowAsync<PolicyGridException>(() => state.Store().ReplaceAsync(Collections.Executors, "gpu", new JsonObject(), null, Ct));
        e.Status.ShouldBe(404);
        e.Message.ShouldBe("executor 'gpu' does not exist (deleted meanwhile, or never stored)"); // as SQLite says it
    }

    [Fact]
    public async Task Delete_uses_the_etag_returns_the_document_and_leaves_the_index()
    {
        var store = state.Store();
        var created = await store.CreateAsync(Collections.Policies, "ip:1.0-beta", Policy("ip"), Ct);
        var etag = state.Entries["policies/ip:1.0-beta"].ETag;

        var deleted = await store.DeleteAsync(Collections.Policies, "ip:1.0-beta", created.Revision, Ct);

        deleted!.Body["name"]!.GetValue<string>().ShouldBe("ip");
        await state.Client.Received(1).TryDeleteStateAsync(Store, "policies/ip:1.0-beta", etag, Arg.Any<StateOptions>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>());
        state.Entries.ShouldNotContainKey("policies/ip:1.0-beta");
        JsonSerializer.Deserialize<KeyIndex>(state.Entries["__keyindex/policies"].Json)!.Ids.ShouldBeEmpty();
        (await store.DeleteAsync(Collections.Policies, "ip:1.0-beta", null, Ct)).ShouldBeNull();
    }

    [Fact]
    public async Task Delete_with_a_stale_revision_is_a_409_and_keeps_the_document()
    {
        var store = state.Store();
        await store.CreateAsync(Collections.Policies, "ip:1.0-beta", Policy("ip"), Ct);

        var e = await Should.ThrowAsync<PolicyGridException>(() => store.DeleteAsync(Collections.Policies, "ip:1.0-beta", "not-the-revision", Ct));

        e.Status.ShouldBe(409);
        state.Entries.ShouldContainKey("policies/ip:1.0-beta");
    }

    [Fact]
    public async Task Key_index_mode_keeps_one_id_list_per_collection()
    {
        var store = state.Store(DocumentQueryMode.KeyIndex);
        await store.CreateAsync(Collections.Policies, "a:1.0-x", Policy("a"), Ct);
        await store.CreateAsync(Collections.Policies, "b:1.0-x", Policy("b"), Ct);
        await store.UpsertAsync(Collections.Jobs, "job-1", new JsonObject { ["status"] = "running" }, Ct);

        JsonSerializer.Deserialize<KeyIndex>(state.Entries["__keyindex/policies"].Json)!.Ids.ShouldBe(["a:1.0-x", "b:1.0-x"]);
        JsonSerializer.Deserialize<KeyIndex>(state.Entries["__keyindex/jobs"].Json)!.Ids.ShouldBe(["job-1"]);
    }

    [Fact]
    public async Task Key_index_query_filters_with_core_semantics_sorts_versions_and_pages()
    {
        var store = state.Store(DocumentQueryMode.KeyIndex);
        foreach (var v in new[] { "1.9", "1.10", "1.2" })
            await store.CreateAsync(Collections.Policies, $"ip:{v}-x", Policy("ip", v), Ct);
        await store.CreateAsync(Collections.Policies, "other:1.0-x", Policy("other"), Ct);
        await store.CreateAsync(Collections.Policies, "old:1.0-x", Policy("ip", "0.1", status: "retired"), Ct);
        var filter = FilterParser.Parse(JsonNode.Parse("""{"name": "ip", "status": {"$ne": "retired"}}"""));

        var page = await store.QueryAsync(Collections.Policies, new DocumentQuery(filter, [new SortKey("version", SortDirection.Desc)], Skip: 1, Limit: 1), Ct);
        var all = await store.QueryAsync(Collections.Policies, new DocumentQuery(filter, [new SortKey("version", SortDirection.Desc)]), Ct);

        all.Select(d => d.Id).ShouldBe(["ip:1.10-x", "ip:1.9-x", "ip:1.2-x"]);
        page.Select(d => d.Id).ShouldBe(["ip:1.9-x"]);
        // Read in bulk, in chunks of the configured page size (2).
        await state.Client.Received().GetBulkStateAsync(Store, Arg.Is<IReadOnlyList<string>>(k => k.Count == 2 && k[0] == "policies/ip:1.9-x"), Arg.Any<int?>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>());
    }

    [Fact]
    public async Task Key_index_query_orders_ids_by_code_point_as_the_embedded_store_does()
    {
        // UTF-16 ordinal order put "a😀" (a surrogate pair, D83D) before "a\uE000"; SQLite's id index, by code point, after.
        var store = state.Store(DocumentQueryMode.KeyIndex);
        foreach (var id in new[] { "a\U0001F600", "a\uE000", "a" })
            await store.CreateAsync(Collections.Jobs, id, new JsonObject { ["status"] = "running" }, Ct);

        (await store.QueryAsync(Collections.Jobs, DocumentQuery.All(), Ct)).Select(d => d.Id).ShouldBe(["a", "a\uE000", "a\U0001F600"]);
        (await store.QueryAsync(Collections.Jobs, DocumentQuery.All() with { Sort = [SortKey.ById(SortDirection.Desc)] }, Ct)).Select(d => d.Id)
            .ShouldBe(["a\U0001F600", "a\uE000", "a"]);
    }

    [Fact]
    public async Task Key_index_query_skips_ids_whose_document_is_gone()
    {
        var store = state.Store(DocumentQueryMode.KeyIndex);
        await store.CreateAsync(Collections.Policies, "a:1.0-x", Policy("a"), Ct);
        state.Entries.Remove("policies/a:1.0-x"); // as after a crash between the document delete and the index update

        (await store.QueryAsync(Collections.Policies, DocumentQuery.All(), Ct)).ShouldBeEmpty();
    }

    [Fact]
    public async Task Query_api_mode_sends_the_translated_filter_and_follows_page_tokens()
    {
        var sent = new List<string>();
        state.Client.QueryStateAsync<StateDocument>(Store, Arg.Do<string>(sent.Add), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(
                new StateQueryResponse<StateDocument>([Item("a"), Item("b", status: "retired")], "t2", new Dictionary<string, string>()),
                new StateQueryResponse<StateDocument>([Item("c")], "", new Dictionary<string, string>()));
        var filter = FilterParser.Parse(JsonNode.Parse("""{"tags": {"$in": ["net", "dns"]}, "status": {"$ne": "retired"}}"""));

        var found = await state.Store(DocumentQueryMode.QueryApi).QueryAsync(Collections.Policies, new DocumentQuery(filter, [new SortKey("name", SortDirection.Asc)]), Ct);

        found.Select(d => d.Id).ShouldBe(["a", "c"]); // $ne is not pushed down: applied by Core's matcher
        sent.Count.ShouldBe(2);
        JsonNode.DeepEquals(JsonNode.Parse(sent[0]), JsonNode.Parse("""
            {"filter": {"AND": [{"EQ": {"collection": "policies"}}, {"IN": {"doc.tags": ["net", "dns"]}}]},
             "sort": [{"key": "doc.name", "order": "ASC"}, {"key": "id", "order": "ASC"}],
             "page": {"limit": 2}}
            """)).ShouldBeTrue(sent[0]);
        JsonNode.Parse(sent[1])!["page"]!["token"]!.GetValue<string>().ShouldBe("t2");
    }

    [Fact]
    public async Task Query_api_mode_stops_paging_once_a_store_sorted_page_is_full()
    {
        state.Client.QueryStateAsync<StateDocument>(Store, Arg.Any<string>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(new StateQueryResponse<StateDocument>([Item("a"), Item("b")], "more", new Dictionary<string, string>()));

        var found = await state.Store(DocumentQueryMode.QueryApi).QueryAsync(Collections.Policies, new DocumentQuery(new AndFilter([]), [], 0, 2), Ct);

        found.Count.ShouldBe(2);
        await state.Client.Received(1).QueryStateAsync<StateDocument>(Store, Arg.Any<string>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>());
    }

    [Fact]
    public async Task Query_api_mode_sorts_versions_itself()
    {
        string? sent = null;
        state.Client.QueryStateAsync<StateDocument>(Store, Arg.Do<string>(s => sent = s), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(new StateQueryResponse<StateDocument>([Item("v9", version: "1.9"), Item("v10", version: "1.10")], "", new Dictionary<string, string>()));

        var found = await state.Store(DocumentQueryMode.QueryApi).QueryAsync(Collections.Policies, new DocumentQuery(new AndFilter([]), [new SortKey("version", SortDirection.Desc)]), Ct);

        found.Select(d => d.Id).ShouldBe(["v10", "v9"]);
        JsonNode.Parse(sent!)!.AsObject().ContainsKey("sort").ShouldBeFalse();
    }

    [Fact]
    public async Task An_unreachable_sidecar_is_a_503_naming_the_store()
    {
        state.Client.GetStateAndETagAsync<StateDocument>(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<ConsistencyMode?>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(new DaprException("State operation failed", new RpcException(new Status(StatusCode.Unavailable, "connection refused"))));

        var e = await Should.ThrowAsync<PolicyGridException>(() => state.Store().GetAsync(Collections.Policies, "x", Ct));

        e.Status.ShouldBe(503);
        e.Code.ShouldBe(ErrorCodes.BackendUnavailable);
        e.Message.ShouldContain(Store);
    }

    [Fact]
    public async Task A_store_failure_is_a_502()
    {
        state.Client.GetBulkStateAsync(Arg.Any<string>(), Arg.Any<IReadOnlyList<string>>(), Arg.Any<int?>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .ThrowsAsync(new DaprException("State operation failed", new RpcException(new Status(StatusCode.Internal, "mongo: server selection timeout"))));
        var store = state.Store();
        await store.CreateAsync(Collections.Policies, "a:1.0-x", Policy("a"), Ct);

        var e = await Should.ThrowAsync<PolicyGridException>(() => store.QueryAsync(Collections.Policies, DocumentQuery.All(), Ct));

        e.Status.ShouldBe(502);
        e.Message.ShouldContain("server selection timeout");
    }

    private static StateQueryItem<StateDocument> Item(string id, string status = "active", string version = "1.0") =>
        new("policies/" + id, new StateDocument("policies", id, "r-" + id, Policy(id, version, status)), "e", "");
}
