
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Embedded.Storage;
using Shouldly;
using SortDirection = PolicyGrid.Core.Ports.SortDirection;

namespace PolicyGrid.Embedded.Tests;

/// <summary>
/// The SQL translation must answer exactly what Core's Matches answers. These tests run many random
/// filters over many random, awkwardly shaped documents and compare the store's answer with an
/// in-memory evaluation of the same filter.
/// </summary>
/// <summary>One store filled once with random and hand-made documents, shared by the pushdown tests.</summary>
public sealed class PushdownData : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    public SqliteDocumentStore Store { get; }
    public List<(string Id, JsonObject Body)> Docs { get; } = [];
    public List<(string Id, JsonObject Body)> Sortable { get; } = [];

    public PushdownData() => Store = new SqliteDocumentStore(new SqliteDatabase(_dir.File("policygrid.db")));

    /// <summary>
    /// Numbers within a double's rounding of decimal's end: Core compares ...335 and ...334 exactly but each equal to
    /// ...336 as doubles, so no sort orders them consistently (nor need it, for numbers no one stores).
    /// </summary>
    private static bool IsAtDecimalsEnd(JsonObject body) =>
        JsonValues.TryDouble(body["n"], out var n) && Math.Abs(n) > 7.9e28 && Math.Abs(n) < 8e28;

    public async ValueTask InitializeAsync()
    {
        var random = new Random(20261125);
        for (var i = 0; i < 300; i++)
        {
            // Core sees documents and filters as parsed from text (as the API does), so round-trip them.
            var body = JsonNode.Parse(RandomDocs.Document(random).ToJsonString())!.AsObject();
            Docs.Add(($"d{i:D3}", body));
        }
        // Hand-made edge cases next to the random ones.
        var edges = new[]
        {
            """{"n": 0.1000000000000000001}""", """{"n": 1e30}""", """{"n": 12345678901234567890123}""", """{"n": 1E2}""",
            """{"n": -0.0}""", """{"name": null}""", """{"metadata": null}""", """{"metadata": [{"audience": "web"}, {"audience": ["ops", 3]}]}""",
            """{"metadata": {"audience": []}}""", """{"items": [[1, 2], {"k": "a"}]}""", """{"name": "\uE000"}""", """{"name": "\uD83D\uDE00"}""",
            """{"version": "1.10"}""", """{"version": "1.9-rc1"}""", """{"version": ["2.0", "1.0"]}""", """{"tags": "a,b,c"}""", """{"flag": [true, false]}""",
            """{"a b": "spaced"}""", """{"0": "zero", "items": ["x"]}""", """{"items": {"0": {"k": "obj-key"}}}""",
            // Numbers beyond decimal's range (Core compares them as doubles), around its end and at int64's.
            """{"n": -1e30}""", """{"n": [2, 3e35]}""", """{"n": 1.7976931348623157e308}""", """{"n": -2.5E+29}""",
            """{"n": 79228162514264337593543950335}""", """{"n": 79228162514264337593543950336}""", """{"n": -9223372036854775808}""",
            // Numbers smaller than 1e-12, where decimal keeps fewer digits than a double (Core compares them as doubles).
            """{"n": 1e-30}""", """{"n": -1e-30}""", """{"n": 1.4e-28}""", """{"n": 1e-28}""", """{"n": 0.000000000000000000000000000001}""",
            """{"n": [0, 2.5e-300]}""", """{"n": 0.0000000000001}""", """{"n": 1.0000000000000001e-12}""", """{"n": 1e-400}""",
            """{"n": 4.9e-324}""", """{"metadata": {"level": 1E-30}}""",
            // 15 digits, 23 places: casting its decimal to a double misses the nearest double by one step.
            """{"n": 0.00000000768002418563154}""",
            // Integers past 2^53, exact as int64 (ids): no double holds them, so SQLite must compare them as integers.
            """{"n": 9007199254740993}""", """{"n": 12345678901234567}""", """{"n": 9007199254740993.0}""", """{"n": -9007199254740995.0}""",
            """{"n": [12345678901234567.4, 1]}""",
            // A NUL inside a string: SQLite hands text to a .NET function only up to it.
            """{"name": "a\u0000b"}""", """{"tags": ["x\u0000", "y"]}""",
        };
        foreach (var (json, i) in edges.Select((j, i) => (j, i)))
            Docs.Add(($"edge{i:D2}", JsonNode.Parse(json)!.AsObject()));
        Sortable.AddRange(Docs.Where(d => !IsAtDecimalsEnd(d.Body)));
        await Task.WhenAll(
            Task.WhenAll(Docs.Select(d => Store.CreateAsync("policies", d.Id, (JsonObject)d.Body.DeepClone()))),
            Task.WhenAll(Sortable.Select(d => Store.CreateAsync("sortable", d.Id, (JsonObject)d.Body.DeepClone()))));
    }

    public ValueTask DisposeAsync()
    {
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }
}

public sealed class QueryPushdownTests(PushdownData data) : IClassFixture<PushdownData>
{
    private readonly SqliteDocumentStore _store = data.Store;
    private readonly List<(string Id, JsonObject Body)> _docs = data.Docs;
    private readonly List<(string Id, JsonObject Body)> _sortable = data.Sortable;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task AssertSameAsCore(JsonNode filterJson)
    {
        var filter = FilterParser.Parse(JsonNode.Parse(filterJson.ToJsonString()));
        var expected = _docs.Where(d => filter.Matches(d.Body)).Select(d => d.Id).Order(StringComparer.Ordinal).ToList();
        var actual = (await _store.QueryAsync("policies", new DocumentQuery(filter, [], 0, 10_000), Ct)).Select(d => d.Id).ToList();
        actual.ShouldBe(expected, $"filter {filterJson.ToJsonString()}");
    }

    [Fact]
    public async Task Random_filters_return_exactly_what_Core_matches()
    {
        var random = new Random(7);
        for (var i = 0; i < 600; i++)
            await AssertSameAsCore(RandomDocs.Filter(random, depth: 0));
    }

    [Theory]
    [InlineData("""{"n": 0.1}""")]
    [InlineData("""{"n": {"$gt": 0.1}}""")]
    [InlineData("""{"n": {"$gte": 1e29}}""")]
    [InlineData("""{"n": {"$lt": 1e29}}""")]
    [InlineData("""{"n": {"$gt": 12345678901234567000000}}""")]
    [InlineData("""{"n": {"$gt": 1e29}}""")]
    [InlineData("""{"n": {"$gte": 1e30}}""")]
    [InlineData("""{"n": {"$lt": 1e30}}""")]
    [InlineData("""{"n": {"$lt": -1e30}}""")]
    [InlineData("""{"n": {"$lte": -1e30}}""")]
    [InlineData("""{"n": {"$gt": -1e29}}""")]
    [InlineData("""{"n": {"$gt": 5}}""")]
    [InlineData("""{"n": {"$lt": 5}}""")]
    [InlineData("""{"n": {"$gt": 1.7976931348623157e308}}""")]
    [InlineData("""{"n": {"$gte": 79228162514264337593543950335}}""")]
    [InlineData("""{"n": {"$lt": 79228162514264337593543950336}}""")]
    [InlineData("""{"n": {"$lte": -9223372036854775808}}""")]
    [InlineData("""{"n": 1e30}""")]
    [InlineData("""{"n": 1000000000000000000000000000000}""")]
    [InlineData("""{"n": 3e35}""")]
    [InlineData("""{"n": 79228162514264337593543950336}""")]
    [InlineData("""{"n": {"$ne": -1e30}}""")]
    [InlineData("""{"n": {"$in": [1e30, 3e35, 5]}}""")]
    [InlineData("""{"n": {"$nin": [1e30, -2.5e29]}}""")]
    [InlineData("""{"n": {"$all": [3e35, 2]}}""")]
    [InlineData("""{"n": {"$not": {"$gt": 1e29}}}""")]
    [InlineData("""{"n": {"$gt": 0}}""")]
    [InlineData("""{"n": {"$lt": 0}}""")]
    [InlineData("""{"n": {"$gte": 0}}""")]
    [InlineData("""{"n": {"$gt": 1e-30}}""")]
    [InlineData("""{"n": {"$gte": 1e-30}}""")]
    [InlineData("""{"n": {"$lt": 1e-30}}""")]
    [InlineData("""{"n": {"$lte": -1e-30}}""")]
    [InlineData("""{"n": {"$gt": 1e-28}}""")]
    [InlineData("""{"n": {"$lt": 1.4e-28}}""")]
    [InlineData("""{"n": {"$gt": 1e-13}}""")]
    [InlineData("""{"n": {"$lte": 1e-12}}""")]
    [InlineData("""{"n": {"$gt": 4.9e-324}}""")]
    [InlineData("""{"n": 1e-30}""")]
    [InlineData("""{"n": 1E-30}""")]
    [InlineData("""{"n": 1e-13}""")]
    [InlineData("""{"n": 1e-28}""")]
    [InlineData("""{"n": {"$ne": 1e-30}}""")]
    [InlineData("""{"n": {"$in": [1e-30, 5]}}""")]
    [InlineData("""{"n": {"$nin": [1e-30, 0]}}""")]
    [InlineData("""{"n": {"$all": [2.5e-300, 0]}}""")]
    [InlineData("""{"metadata.level": {"$gt": 0, "$lt": 1e-29}}""")]
    [InlineData("""{"n": 0.00000000768002418563154}""")]
    [InlineData("""{"n": {"$gte": 0.00000000768002418563154}}""")]
    [InlineData("""{"n": {"$lt": 0.00000000768002418563154}}""")]
    [InlineData("""{"n": 9007199254740993}""")]
    [InlineData("""{"n": 12345678901234567}""")]
    [InlineData("""{"n": {"$in": [12345678901234567, 1]}}""")]
    [InlineData("""{"n": {"$gte": 9007199254740993}}""")]
    [InlineData("""{"n": {"$lte": 9007199254740993}}""")]
    [InlineData("""{"n": {"$lt": 12345678901234567}}""")]
    [InlineData("""{"n": {"$ne": 12345678901234567}}""")]
    [InlineData("""{"n": {"$gt": 12345678901234567}}""")]
    [InlineData("""{"n": {"$lte": -9007199254740995}}""")]
    [InlineData("""{"n": {"$gte": -9007199254740995}}""")]
    [InlineData("""{"n": -9007199254740995}""")]
    [InlineData("""{"name": {"$regex": "^a$"}}""")]
    [InlineData("""{"name": {"$regex": "b$"}}""")]
    [InlineData("""{"name": {"$in": [{"$regex": "^a$"}]}}""")]
    [InlineData("""{"tags": {"$regex": "^x$"}}""")]
    [InlineData("""{"name": "a\u0000b"}""")]
    [InlineData("""{"name": {"$regex": "\u0000"}}""")]
    [InlineData("""{"name": {"$in": [{"$regex": "\u0000b"}]}}""")]
    [InlineData("""{"name": {"$gt": "a"}}""")]
    [InlineData("""{"n": 100}""")]
    [InlineData("""{"n": 0}""")]
    [InlineData("""{"n": {"$ne": 0.1}}""")]
    [InlineData("""{"name": null}""")]
    [InlineData("""{"name": {"$ne": null}}""")]
    [InlineData("""{"metadata.audience": "ops"}""")]
    [InlineData("""{"metadata.audience": 3}""")]
    [InlineData("""{"metadata.audience": {"$size": 0}}""")]
    [InlineData("""{"metadata.audience": null}""")]
    [InlineData("""{"items.0": "x"}""")]
    [InlineData("""{"items.0.k": "obj-key"}""")]
    [InlineData("""{"items.k": "a"}""")]
    [InlineData("""{"items": [1, 2]}""")]
    [InlineData("""{"name": {"$gt": "\uE000"}}""")]
    [InlineData("""{"name": {"$lt": "\uE000"}}""")]
    [InlineData("""{"version": {"$gt": "1.9"}}""")]
    [InlineData("""{"version": {"$lt": "1.9"}}""")]
    [InlineData("""{"tags": {"$regex": "(^|,)b(,|$)"}}""")]
    [InlineData("""{"tags": {"$regex": "B", "$options": "i"}}""")]
    [InlineData("""{"tags": {"$in": [{"$regex": "^a,"}, "zzz"]}}""")]
    [InlineData("""{"flag": {"$gt": false}}""")]
    [InlineData("""{"flag": {"$all": [true, false]}}""")]
    [InlineData("""{"flag": {"$all": [true]}}""")]
    [InlineData("""{"flag": {"$all": []}}""")]
    [InlineData("""{"tags": {"$nin": [{"$regex": "^a"}]}}""")]
    [InlineData("""{"metadata": {"audience": "web"}}""")]
    [InlineData("""{"metadata": {"$in": [{"audience": "web"}, null]}}""")]
    [InlineData("""{"a b": "spaced"}""")]
    [InlineData("""{"0": "zero"}""")]
    [InlineData("""{"name": {"$not": {"$regex": "^p"}}}""")]
    [InlineData("""{"items": {"$elemMatch": {"k": "a"}}}""")]
    [InlineData("""{"$or": [{"n": {"$exists": false}}, {"flag": true}]}""")]
    public async Task Edge_case_filters_return_exactly_what_Core_matches(string filter) => await AssertSameAsCore(JsonNode.Parse(filter)!);

    [Fact]
    public async Task Long_lists_bound_as_one_json_parameter_return_exactly_what_Core_matches()
    {
        // Over the inline limit, strings go to SQLite as one JSON array (json_each); numbers are left to Core.
        var strings = new JsonArray([.. Enumerable.Range(0, 40).Select(i => (JsonNode)JsonValue.Create(i % 4 == 0 ? "web" : $"x{i}\u00e9"))]);
        strings.Add("ops");
        await AssertSameAsCore(new JsonObject { ["metadata.audience"] = new JsonObject { ["$in"] = strings.DeepClone() } });
        await AssertSameAsCore(new JsonObject { ["metadata.audience"] = new JsonObject { ["$nin"] = strings.DeepClone() } });
        await AssertSameAsCore(new JsonObject { ["tags"] = new JsonObject { ["$in"] = strings.DeepClone() } });
        var numbers = new JsonArray([.. Enumerable.Range(0, 40).Select(i => (JsonNode)JsonValue.Create(i))]);
        await AssertSameAsCore(new JsonObject { ["n"] = new JsonObject { ["$in"] = numbers.DeepClone() } });
        numbers.Add(JsonNode.Parse("1e30"));
        await AssertSameAsCore(new JsonObject { ["n"] = new JsonObject { ["$in"] = numbers.DeepClone() } });
        await AssertSameAsCore(new JsonObject { ["n"] = new JsonObject { ["$nin"] = numbers } });
    }

    [Fact]
    public async Task Sort_skip_and_limit_agree_with_Core_ordering()
    {
        var random = new Random(11);
        string[] sortPaths = ["name", "n", "version", "flag", "metadata.level", "items.k", "missing", SortKey.DocumentId];
        for (var i = 0; i < 120; i++)
        {
            var filterJson = random.Next(3) == 0 ? new JsonObject() : RandomDocs.Filter(random, depth: 0);
            var filter = FilterParser.Parse(JsonNode.Parse(filterJson.ToJsonString()));
            var sort = Enumerable.Range(0, random.Next(0, 3))
                .Select(_ => new SortKey(sortPaths[random.Next(sortPaths.Length)], random.Next(2) == 0 ? SortDirection.Asc : SortDirection.Desc)).ToList();
            var skip = random.Next(0, 20);
            var limit = random.Next(1, 40);
            var expected = _sortable.Where(d => filter.Matches(d.Body)).Select(d => new StoredDocument(d.Id, d.Body, ""))
                .Order(new DocumentOrder(sort)).Skip(skip).Take(limit).Select(d => d.Id).ToList();
            var actual = (await _store.QueryAsync("sortable", new DocumentQuery(filter, sort, skip, limit), Ct)).Select(d => d.Id).ToList();
            actual.ShouldBe(expected, $"filter {filterJson.ToJsonString()} sort {string.Join(",", sort)} skip {skip} limit {limit}");
        }
    }

    [Fact]
    public async Task Numbers_beyond_decimal_range_are_found_and_sorted_by_value()
    {
        foreach (var (id, n) in new[] { ("big", "1e30"), ("neg", "-1e30"), ("five", "5"), ("tenth", "0.1000000000000000001"), ("huge", "3e35") })
            await _store.UpsertAsync("numbers", id, JsonNode.Parse($$"""{"n": {{n}}}""")!.AsObject(), Ct);
        async Task<string> Ids(string filter, string sort = "n")
        {
            var query = new DocumentQuery(FilterParser.Parse(JsonNode.Parse(filter)), [new SortKey(sort, SortDirection.Asc)]);
            return string.Join(",", (await _store.QueryAsync("numbers", query, Ct)).Select(d => d.Id));
        }
        (await Ids("""{"n": {"$gt": 1e29}}""")).ShouldBe("big,huge");
        (await Ids("""{"n": {"$gt": 5}}""")).ShouldBe("big,huge");
        (await Ids("""{"n": {"$lt": -1e29}}""")).ShouldBe("neg");
        (await Ids("""{"n": {"$lt": -1e30}}""")).ShouldBe("");
        (await Ids("""{"n": 1e30}""")).ShouldBe("big");
        (await Ids("""{"n": {"$in": [3e35, -1e30]}}""")).ShouldBe("neg,huge");
        (await Ids("""{"n": {"$nin": [3e35, -1e30]}}""")).ShouldBe("tenth,five,big");
        (await Ids("""{"n": {"$gt": 0.1}}""")).ShouldBe("tenth,five,big,huge");
        (await Ids("{}")).ShouldBe("neg,tenth,five,big,huge");
    }

    [Fact]
    public async Task Numbers_smaller_than_a_decimal_keeps_are_found_and_sorted_by_value()
    {
        foreach (var (id, n) in new[] { ("zero", "0"), ("tiny", "1e-30"), ("negtiny", "-1e-30"), ("e28", "1e-28"), ("e28plus", "1.4e-28"), ("tenth", "0.1") })
            await _store.UpsertAsync("tiny_numbers", id, JsonNode.Parse($$"""{"n": {{n}}}""")!.AsObject(), Ct);
        async Task<string> Ids(string filter)
        {
            var query = new DocumentQuery(FilterParser.Parse(JsonNode.Parse(filter)), [new SortKey("n", SortDirection.Asc)]);
            return string.Join(",", (await _store.QueryAsync("tiny_numbers", query, Ct)).Select(d => d.Id));
        }
        (await Ids("""{"n": {"$gt": 0}}""")).ShouldBe("tiny,e28,e28plus,tenth");
        (await Ids("""{"n": {"$lt": 0}}""")).ShouldBe("negtiny");
        (await Ids("""{"n": 0}""")).ShouldBe("zero");
        (await Ids("""{"n": {"$gt": 1e-30}}""")).ShouldBe("e28,e28plus,tenth");
        (await Ids("""{"n": {"$lt": 1e-30}}""")).ShouldBe("negtiny,zero");
        (await Ids("""{"n": {"$gt": 1e-28}}""")).ShouldBe("e28plus,tenth");
        (await Ids("""{"n": 1E-30}""")).ShouldBe("tiny");
        (await Ids("""{"n": {"$in": [1e-30, 0.000000000000000000000000000140]}}""")).ShouldBe("tiny,e28plus");
        (await Ids("{}")).ShouldBe("negtiny,zero,tiny,e28,e28plus,tenth");
    }

    [Fact]
    public void Common_filters_are_answered_entirely_by_SQL()
    {
        string[] exact =
        [
            """{"release_tag": "stable"}""", """{"metadata.audience": {"$in": ["web", "ops"]}, "risk": {"$gte": 3}}""",
            """{"tags": {"$regex": "(^|,)pci(,|$)"}}""", """{"name": {"$ne": "x"}, "enabled": true}""", """{"version": {"$gte": "1.2"}}""",
            """{"$or": [{"a": null}, {"b": {"$exists": true}}]}""", """{"a": {"$nin": ["x", 2]}}""",
            """{"risk": {"$gt": 1e30}}""", """{"risk": {"$in": [1e30, 5]}}""",
            """{"risk": {"$gt": 1e-30}}""", """{"risk": {"$in": [1e-30, 0.5, 0]}}""", """{"risk": {"$lte": 0.000001}}""",
        ];
        foreach (var f in exact)
            SqlFilterTranslator.Translate(FilterParser.Parse(JsonNode.Parse(f))).Condition.IsExact.ShouldBeTrue(f);
        SqlFilterTranslator.Translate(FilterParser.Parse(JsonNode.Parse("""{"a": {"$elemMatch": {"b": 1}}}"""))).Condition.IsExact.ShouldBeFalse();
    }

    [Fact]
    public async Task Filter_values_never_become_SQL_text()
    {
        var hostile = "x' OR 1=1; DROP TABLE \"doc_policies\"; --";
        var filter = FilterParser.Parse(new JsonObject { ["name"] = hostile, [hostile] = new JsonObject { ["$exists"] = false } });
        var sql = SqlFilterTranslator.Translate(filter);
        sql.Condition.Possible.ShouldNotContain("DROP");
        (await _store.QueryAsync("policies", new DocumentQuery(filter, [new SortKey(hostile, SortDirection.Asc)]), Ct)).ShouldBeEmpty();
        (await _store.QueryAsync("policies", DocumentQuery.All(), Ct)).Count.ShouldBe(DocumentQuery.MaxLimit > _docs.Count ? _docs.Count : DocumentQuery.MaxLimit);
    }

    [Fact]
    public async Task A_catastrophic_regex_is_a_400_not_a_hang()
    {
        await _store.UpsertAsync("evil", "evil", new JsonObject { ["tags"] = new string('a', 40) + "!" }, Ct);
        var filter = FilterParser.Parse(JsonNode.Parse("""{"tags": {"$regex": "^(a+)+$"}}"""));
        var e = await Should.ThrowAsync<PolicyGridException>(() => _store.QueryAsync("evil", new DocumentQuery(filter, []), Ct));
        e.Status.ShouldBe(400);
    }

    /// <summary>256 regexes that each stay well under their own timeout on a long value, but add up to seconds.</summary>
    private static FilterNode ManySlowRegexes() => FilterParser.Parse(new JsonObject
    {
        ["$or"] = new JsonArray([.. Enumerable.Range(100, FilterParser.MaxConditions)
            .Select(n => (JsonNode)new JsonObject { ["description"] = new JsonObject { ["$regex"] = $"a{{1,{n}}}b" } })]),
    });

    [Fact]
    public async Task Regexes_run_inside_sql_share_the_query_time_budget()
    {
        await _store.UpsertAsync("long", "long", new JsonObject { ["description"] = new string('a', 50_000) }, Ct);
        var query = new DocumentQuery(ManySlowRegexes(), []) { TimeBudget = TimeSpan.FromMilliseconds(50) };
        var e = await Should.ThrowAsync<PolicyGridException>(() => _store.QueryAsync("long", query, Ct));
        e.Status.ShouldBe(400);
        e.Message.ShouldContain("more than 50 ms");
    }

    [Fact]
    public async Task Rows_decided_by_core_share_the_query_time_budget()
    {
        // $elemMatch is evaluated by Core on the rows SQL cannot decide.
        await _store.UpsertAsync("long_items", "long", new JsonObject { ["items"] = new JsonArray(new JsonObject { ["description"] = new string('a', 50_000) }) }, Ct);
        var filter = new FilterNode[] { new FieldFilter("items", FieldOperator.ElemMatch, null, ManySlowRegexes()) };
        var query = new DocumentQuery(new AndFilter(filter), []) { TimeBudget = TimeSpan.FromMilliseconds(50) };
        var e = await Should.ThrowAsync<PolicyGridException>(() => _store.QueryAsync("long_items", query, Ct));
        e.Message.ShouldContain("more than 50 ms");
    }

    [Fact]
    public async Task A_query_stops_soon_after_its_caller_goes_away()
    {
        // Each regex well under its own 250 ms match timeout (which would end the query first, as a 400), all of them
        // together far over the 100 ms after which the caller goes: the query must notice between conditions.
        await _store.UpsertAsync("longer", "long", new JsonObject { ["description"] = new string('a', 20_000) }, Ct);
        using var gone = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        gone.CancelAfter(TimeSpan.FromMilliseconds(100));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var query = new DocumentQuery(ManySlowRegexes(), []) { TimeBudget = TimeSpan.FromMinutes(5) };
        await Should.ThrowAsync<OperationCanceledException>(() => _store.QueryAsync("longer", query, gone.Token));
        watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task Negative_skip_or_limit_is_a_400()
    {
        (await Should.ThrowAsync<PolicyGridException>(() => _store.QueryAsync("policies", DocumentQuery.All() with { Skip = -1 }, Ct))).Status.ShouldBe(400);
        (await Should.ThrowAsync<PolicyGridException>(() => _store.QueryAsync("policies", DocumentQuery.All() with { Limit = -1 }, Ct))).Status.ShouldBe(400);
    }
}

/// <summary>Random documents of mixed, awkward shapes and random filters over their fields.</summary>
internal static class RandomDocs
{
    private static readonly string[] Words = ["web", "ops", "pci", "a", "b", "x", "stable", "beta", ""];
    private static readonly string[] Versions = ["1.0", "1.9", "1.10", "1.0-rc1", "2.0", "1.0.1", "10"];

    public static JsonObject Document(Random r)
    {
        var doc = new JsonObject();
        if (r.Next(5) > 0) doc["name"] = r.Next(8) == 0 ? null : Word(r);
        if (r.Next(4) > 0) doc["n"] = Number(r);
        if (r.Next(3) > 0) doc["flag"] = r.Next(6) == 0 ? new JsonArray(true) : r.Next(2) == 0;
        if (r.Next(3) > 0) doc["version"] = r.Next(6) == 0 ? new JsonArray(Versions[r.Next(Versions.Length)]) : Versions[r.Next(Versions.Length)];
        if (r.Next(3) > 0) doc["tags"] = string.Join(",", Enumerable.Range(0, r.Next(0, 4)).Select(_ => Word(r)));
        if (r.Next(4) > 0)
        {
            JsonNode? audience = r.Next(4) switch
            {
                0 => Word(r),
                1 => new JsonArray(),
                _ => new JsonArray(Enumerable.Range(0, r.Next(1, 4)).Select(_ => r.Next(5) == 0 ? (JsonNode?)Number(r) : Word(r)).ToArray()),
            };
            var metadata = new JsonObject { ["audience"] = audience, ["level"] = Number(r) };
            doc["metadata"] = r.Next(5) == 0 ? new JsonArray(metadata, new JsonObject { ["audience"] = Word(r) }) : metadata;
        }
        if (r.Next(3) > 0)
            doc["items"] = new JsonArray(Enumerable.Range(0, r.Next(0, 4)).Select(_ => r.Next(4) switch
            {
                0 => (JsonNode?)Word(r),
                1 => null,
                _ => new JsonObject { ["k"] = Word(r), ["v"] = Number(r) },
            }).ToArray());
        return doc;
    }

    public static JsonNode Filter(Random r, int depth)
    {
        if (depth < 2 && r.Next(5) == 0)
        {
            var op = r.Next(2) == 0 ? "$and" : "$or";
            return new JsonObject { [op] = new JsonArray(Enumerable.Range(0, r.Next(1, 4)).Select(_ => Filter(r, depth + 1)).ToArray()) };
        }
        string[] paths = ["name", "n", "flag", "version", "tags", "metadata.audience", "metadata.level", "items", "items.k", "items.v", "items.0", "missing", "metadata"];
        var path = paths[r.Next(paths.Length)];
        // A number or boolean against version is a 400 (FilterParser): versions are strings there.
        JsonNode? Value() => r.Next(7) switch
        {
            0 => null,
            1 when path != "version" => r.Next(2) == 0,
            2 when path != "version" => Number(r),
            1 or 2 or 3 => Versions[r.Next(Versions.Length)],
            _ => Word(r),
        };
        JsonNode? condition = r.Next(15) switch
        {
            0 => Value(),
            1 => new JsonObject { ["$eq"] = Value() },
            2 => new JsonObject { ["$ne"] = Value() },
            3 => new JsonObject { ["$in"] = new JsonArray(Value(), Value()) },
            4 => new JsonObject { ["$nin"] = new JsonArray(Value(), r.Next(3) == 0 ? new JsonObject { ["$regex"] = "^w" } : Value()) },
            5 => new JsonObject { [new[] { "$gt", "$gte", "$lt", "$lte" }[r.Next(4)]] = Value() ?? "web" },
            6 => new JsonObject { ["$exists"] = r.Next(2) == 0 },
            7 => new JsonObject { ["$regex"] = new[] { "^w", "b$", "(^|,)pci(,|$)", "o", "^$" }[r.Next(5)] },
            8 => new JsonObject { ["$size"] = r.Next(0, 3) },
            9 => new JsonObject { ["$all"] = new JsonArray(Enumerable.Range(0, r.Next(0, 3)).Select(_ => Value()).ToArray()) },
            10 => new JsonObject { ["$not"] = new JsonObject { ["$in"] = new JsonArray(Value()) } },
            11 => new JsonObject { ["$elemMatch"] = new JsonObject { ["k"] = Word(r) } },
            12 when path != "version" => new JsonObject { ["$gte"] = Number(r), ["$lt"] = Number(r) },
            12 => new JsonObject { ["$gte"] = Value() ?? "1.0", ["$lt"] = Value() ?? "2.0" },
            13 => new JsonObject { ["$in"] = new JsonArray(new JsonObject { ["$regex"] = "^" + Word(r) }) },
            _ => new JsonObject { ["$regex"] = Word(r).ToUpperInvariant(), ["$options"] = "i" },
        };
        return new JsonObject { [path] = condition };
    }

    private static string Word(Random r) => Words[r.Next(Words.Length)];

    private static JsonNode Number(Random r) => r.Next(6) switch
    {
        0 => JsonValue.Create(r.Next(-3, 4)),
        1 => JsonValue.Create(Math.Round(r.NextDouble() * 10, 1)),
        2 => JsonNode.Parse(r.Next(2) == 0 ? "2.50" : "3")!,
        3 => JsonNode.Parse(r.Next(3) switch { 0 => "1e30", 1 => "-4.5E+29", _ => "1000000000000000000000000000000" })!,
        // Smaller than 1e-12, parsed and built in code: Core compares these as doubles.
        4 => r.Next(3) switch
        {
            0 => JsonNode.Parse(r.Next(3) switch { 0 => "1e-30", 1 => "-2.5E-29", _ => "0.000000000000000000000000000001" })!,
            1 => JsonNode.Parse(r.Next(2) == 0 ? "1.4e-28" : "1e-28")!,
            _ => JsonValue.Create(r.Next(-2, 3) * 1e-20),
        },
        _ => JsonValue.Create((decimal)r.Next(0, 5) / 2m),
    };
}
