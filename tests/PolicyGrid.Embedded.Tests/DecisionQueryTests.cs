using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Execution;
using Shouldly;
using SortDirection = PolicyGrid.Core.Ports.SortDirection;

namespace PolicyGrid.Embedded.Tests;

/// <summary>A decision log written through <see cref="DecisionLog"/> (so ids are made as in production), shared by the decision query tests.</summary>
public sealed class DecisionData : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    public SqliteDocumentStore Store { get; }
    public List<StoredDocument> Docs { get; } = [];
    public static readonly DateTimeOffset Start = new(2026, 3, 1, 10, 0, 0, TimeSpan.Zero);

    public DecisionData() => Store = new SqliteDocumentStore(new SqliteDatabase(_dir.File("policygrid.db")), DecisionLogOptions.IndexableFields);

    public async ValueTask InitializeAsync()
    {
        await DecisionSamples.RecordAsync(Store, new Random(20260301), 1500, Start);
        Docs.AddRange(await DecisionSamples.ReadAllAsync(Store));
    }

    public ValueTask DisposeAsync()
    {
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }
}

internal static class DecisionSamples
{
    /// <summary>
    /// Decisions of 20 policies and 50 callers, a few per millisecond (ties of "at"), some at a tick inside their
    /// millisecond and some recorded after a later one; errors, function calls and graph node calls among them.
    /// </summary>
    public static async Task RecordAsync(IDocumentStore store, Random random, int count, DateTimeOffset start)
    {
        await using var log = new DecisionLog(store, new DecisionLogOptions(), TimeProvider.System, NullLogger<DecisionLog>.Instance);
        var at = start;
        for (var i = 0; i < count; i++)
        {
            at = at.AddMilliseconds(random.Next(3));
            var when = random.Next(10) == 0 ? at.AddTicks(random.Next(1, 10_000)) : random.Next(40) == 0 ? at.AddMilliseconds(-random.Next(1, 50)) : at;
            var error = random.Next(20) == 0;
            var kind = random.Next(4) switch { 0 => Decision.KindFunctionCall, 1 => Decision.KindFunctionManagement, _ => "execute" };
            var policy = $"policy{random.Next(20)}:1.0-a";
            var decision = new Decision(kind, policy, "sha", $"caller{random.Next(50)}", policy, $"input-{i}",
                error ? Decision.OutcomeError : Decision.OutcomeResult, error ? (random.Next(2) == 0 ? "timeout" : "raised") : "",
                error ? (random.Next(2) == 0 ? 504 : 422) : 200, random.Next(1000) / 10.0, when);
            if (kind != "execute") decision = decision with { FunctionId = $"f{random.Next(5)}" };
            if (kind == Decision.KindFunctionCall && random.Next(2) == 0) decision = decision with { GraphId = $"g{random.Next(3)}", ExecutionId = $"x{random.Next(30)}" };
            await log.RecordAsync(decision);
        }
        await log.FlushAsync();
    }

    public static async Task<List<StoredDocument>> ReadAllAsync(IDocumentStore store)
    {
        var all = new List<StoredDocument>();
        while (true)
        {
            var page = await store.QueryAsync(Collections.Decisions, new DocumentQuery(new AndFilter([]), [SortKey.ById(SortDirection.Asc)], all.Count, DocumentQuery.MaxLimit));
            all.AddRange(page);
            if (page.Count < DocumentQuery.MaxLimit) return all;
        }
    }

    /// <summary>An id as <see cref="DecisionLog"/> makes it for <paramref name="at"/>: its Unix milliseconds, then version, counter and random digits.</summary>
    public static string IdAt(DateTimeOffset at, int counter) =>
        Math.Max(0, at.ToUnixTimeMilliseconds()).ToString("x12", System.Globalization.CultureInfo.InvariantCulture) + "7" + counter.ToString("x3", System.Globalization.CultureInfo.InvariantCulture) + "8000000000000000";
}

/// <summary>
/// Decision queries read only what they answer with (a time window as an id range, equality through the field
/// indexes, a sort on "at" in id order), and answer exactly what Core's evaluation over every decision answers.
/// </summary>
public sealed class DecisionQueryTests(DecisionData data) : IClassFixture<DecisionData>
{
    private readonly SqliteDocumentStore _store = data.Store;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private string At(int index) => data.Docs.Select(d => d.Body["at"]!.GetValue<string>()).Order(StringComparer.Ordinal).ElementAt(index);

    private List<string> Filters()
    {
        string a = At(200), b = At(900), tie = data.Docs.GroupBy(d => d.Body["at"]!.GetValue<string>()).First(g => g.Count() > 2).Key;
        return
        [
            $$$"""{"at": {"$gte": "{{{a}}}", "$lt": "{{{b}}}"}}""",
            $$$"""{"at": {"$gt": "{{{a}}}", "$lte": "{{{b}}}"}}""",
            $$$"""{"at": "{{{tie}}}"}""",
            $$$"""{"at": {"$in": ["{{{tie}}}", "{{{b}}}"]}}""",
            $$$"""{"at": {"$in": ["{{{tie}}}", null]}}""",
            $$$"""{"at": {"$gte": "{{{a[..19]}}}"}}""",
            $$$"""{"at": {"$lt": "{{{b[..19]}}}+02:00"}}""",
            $$$"""{"at": {"$lte": "{{{a[..23]}}}"}}""",
            $$$"""{"at": {"$gt": "{{{tie[..22]}}}"}}""",
            """{"at": {"$gte": "2026-03-01"}}""",
            """{"at": {"$lt": "2026-03-01T10:00:01"}}""",
            """{"at": {"$gte": ""}}""",
            """{"at": {"$lt": ""}}""",
            """{"at": {"$gt": "~"}}""",
            """{"at": {"$lte": "1969"}}""",
            """{"at": {"$gte": 5}}""",
            """{"at": {"$not": {"$lt": "2026-03-01T10:00:01"}}}""",
            $$$"""{"at": {"$gte": "{{{a}}}"}, "caller": "caller3"}""",
            $$$"""{"$or": [{"at": {"$lt": "{{{a}}}"}}, {"at": {"$gte": "{{{b}}}"}}]}""",
            $$$"""{"$or": [{"at": {"$lt": "{{{a}}}"}}, {"caller": "caller1"}]}""",
            """{"caller": "caller7"}""",
            """{"policy_rule_uri": {"$in": ["policy1:1.0-a", "policy2:1.0-a"]}}""",
            """{"outcome": "error"}""",
            """{"status": 504}""",
            """{"status": 504.0}""",
            """{"status": "504"}""",
            """{"status": {"$in": [422, 504]}}""",
            $$$"""{"error_code": "timeout", "at": {"$gte": "{{{a}}}", "$lt": "{{{b}}}"}}""",
            """{"kind": "function_call", "function_id": "f1"}""",
            """{"function_id": null}""",
            """{"function_id": {"$in": ["f1", null]}}""",
            """{"graph_id": {"$exists": false}}""",
            """{"execution_id": {"$in": ["x1", "x2", "x3"]}}""",
            """{"$or": [{"caller": "caller1"}, {"policy_rule_uri": "policy2:1.0-a"}]}""",
            """{"caller": {"$ne": "caller1"}, "outcome": "error"}""",
            """{"caller": {"$in": ["caller1", {"$regex": "^caller2"}]}}""",
            """{"caller": {"$nin": ["caller1", "caller2"]}, "kind": "function_management"}""",
        ];
    }

    private static readonly IReadOnlyList<SortKey>[] Sorts =
    [
        [SortKey.ById(SortDirection.Desc)], [SortKey.ById(SortDirection.Asc)], [new SortKey("at", SortDirection.Desc)], [new SortKey("at", SortDirection.Asc)],
        [new SortKey("at", SortDirection.Desc), new SortKey("caller", SortDirection.Asc)], [new SortKey("duration_ms", SortDirection.Asc)],
    ];

    private static readonly (int Skip, int Limit)[] Pages = [(0, 100), (7, 13), (0, 1000), (3, 0)];

    internal static async Task AssertSameAsCore(SqliteDocumentStore store, List<StoredDocument> docs, IEnumerable<string> filters, IEnumerable<IReadOnlyList<SortKey>> sorts, IEnumerable<(int Skip, int Limit)> pages)
    {
        foreach (var json in filters)
        {
            var filter = FilterParser.Parse(JsonNode.Parse(json));
            var matching = docs.Where(d => filter.Matches(d.Body)).ToList();
            foreach (var sort in sorts)
            {
                var ordered = matching.Order(new DocumentOrder(sort)).Select(d => d.Id).ToList();
                foreach (var (skip, limit) in pages)
                {
                    var actual = (await store.QueryAsync(Collections.Decisions, new DocumentQuery(filter, sort, skip, limit), TestContext.Current.CancellationToken)).Select(d => d.Id).ToList();
                    actual.ShouldBe(ordered.Skip(skip).Take(limit).ToList(), $"filter {json}, sort {string.Join(",", sort)}, skip {skip}, limit {limit}");
                }
            }
        }
    }

    [Fact]
    public async Task Windows_equalities_and_sorts_answer_exactly_what_Core_matches()
    {
        data.Docs.Select(d => d.Body["at"]!.GetValue<string>()).Distinct().Count().ShouldBeLessThan(data.Docs.Count, "the sample has ties of at");
        await AssertSameAsCore(_store, data.Docs, Filters(), Sorts, Pages);
    }

    [Theory]
    [InlineData("""{"caller": "caller7"}""", "USING INDEX doc_decisions_caller (<expr>=?)", true)]
    [InlineData("""{"outcome": "error"}""", "USING INDEX doc_decisions_outcome (<expr>=?)", true)]
    [InlineData("""{"function_id": "f1"}""", "USING INDEX doc_decisions_function_id (<expr>=?)", true)]
    [InlineData("""{"policy_rule_uri": {"$in": ["policy1:1.0-a", "policy2:1.0-a"]}}""", "USING INDEX doc_decisions_policy_rule_uri (<expr>=?)", false)]
    [InlineData("""{"at": {"$gte": "2026-03-01T10:00:01", "$lt": "2026-03-01T10:00:02"}}""", "(id>? AND id<?)", true)]
    [InlineData("""{"at": {"$gt": "2026-03-01T10:00:01"}}""", "(id>?)", true)]
    [InlineData("""{"graph_id": "g1", "at": {"$lte": "2026-03-01T10:00:01"}}""", "USING INDEX doc_decisions_graph_id (<expr>=? AND id<?)", true)]
    public async Task Selective_filters_are_served_by_an_index(string filter, string expected, bool inIdOrder)
    {
        var plan = await _store.ExplainAsync(Collections.Decisions, new DocumentQuery(FilterParser.Parse(JsonNode.Parse(filter)), [SortKey.ById(SortDirection.Desc)]), Ct);
        plan.ShouldContain(expected, Case.Sensitive, $"plan:\n{plan}");
        // Several values of one field are read from the index value by value, then put in id order.
        if (inIdOrder) plan.ShouldNotContain("TEMP B-TREE", Case.Sensitive, $"plan:\n{plan}");
    }

    [Theory]
    [InlineData(SortDirection.Asc)]
    [InlineData(SortDirection.Desc)]
    public async Task A_sort_on_at_walks_the_ids_instead_of_sorting_every_decision(SortDirection direction)
    {
        var plan = await _store.ExplainAsync(Collections.Decisions, new DocumentQuery(new AndFilter([]), [new SortKey("at", direction)]), Ct);
        plan.ShouldNotContain("TEMP B-TREE", Case.Sensitive, $"plan:\n{plan}");
    }
}

/// <summary>Decisions the log never writes (arrays, fractions, times before 1970) turn the shortcuts off, and answers stay Core's.</summary>
/// <summary>
/// The field indexes cost every decision written (several times the decision itself with many callers), so they are kept
/// only on the fields <c>Decisions:IndexedFields</c> names: none by default, and one taken out is dropped.
/// </summary>
public sealed class DecisionIndexChoiceTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    private async Task<List<string>> IndexesAfterAWrite(IReadOnlyList<string>? indexed)
    {
        var database = new SqliteDatabase(_dir.File("policygrid.db"));
        var store = new SqliteDocumentStore(database, indexed);
        await DecisionSamples.RecordAsync(store, new Random(3), 50, DecisionData.Start);
        await using var connection = await database.OpenAsync(Ct);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{SqliteDatabase.TableFor(Collections.Decisions)}' AND sql IS NOT NULL ORDER BY name";
        using var reader = command.ExecuteReader();
        var names = new List<string>();
        while (reader.Read()) names.Add(reader.GetString(0));
        return names;
    }

    [Fact]
    public async Task No_field_is_indexed_unless_asked_and_a_field_taken_out_loses_its_index()
    {
        (await IndexesAfterAWrite(null)).ShouldBeEmpty();
        (await IndexesAfterAWrite(["caller", "outcome"])).ShouldBe(["doc_decisions_caller", "doc_decisions_irregular", "doc_decisions_outcome"]);
        (await IndexesAfterAWrite(["outcome"])).ShouldBe(["doc_decisions_irregular", "doc_decisions_outcome"]);
        (await IndexesAfterAWrite([])).ShouldBeEmpty();
    }

    [Fact]
    public async Task Without_indexes_a_caller_query_answers_the_same_and_a_window_still_reads_only_its_ids()
    {
        var store = new SqliteDocumentStore(new SqliteDatabase(_dir.File("policygrid.db")));
        await DecisionSamples.RecordAsync(store, new Random(9), 400, DecisionData.Start);
        var docs = await DecisionSamples.ReadAllAsync(store);
        const string window = """{"at": {"$gte": "2026-03-01T10:00:00.020", "$lt": "2026-03-01T10:00:00.060"}}""";
        await DecisionQueryTests.AssertSameAsCore(store, docs, ["""{"caller": "caller1"}""", window],
            [[SortKey.ById(SortDirection.Desc)], [new SortKey("at", SortDirection.Desc)]], [(0, 10), (0, 1000)]);
        (await store.ExplainAsync(Collections.Decisions, new DocumentQuery(FilterParser.Parse(JsonNode.Parse("""{"caller": "caller1"}""")), [SortKey.ById(SortDirection.Desc)]), Ct))
            .ShouldNotContain("doc_decisions_caller");
        (await store.ExplainAsync(Collections.Decisions, new DocumentQuery(FilterParser.Parse(JsonNode.Parse(window)), [SortKey.ById(SortDirection.Desc)]), Ct))
            .ShouldContain("(id>? AND id<?)");
    }
}

public sealed class IrregularDecisionTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    private async Task<SqliteDocumentStore> StoreWithSamples()
    {
        var store = new SqliteDocumentStore(new SqliteDatabase(_dir.File("policygrid.db")), DecisionLogOptions.IndexableFields);
        await DecisionSamples.RecordAsync(store, new Random(5), 300, DecisionData.Start);
        return store;
    }

    private static JsonObject Body(string id, DateTimeOffset at, string fields) =>
        JsonNode.Parse($$"""{"decision_id": "{{id}}", "kind": "execute", "policy_rule_uri": "policy1:1.0-a", "at": "{{DecisionLog.FormatTime(at)}}", {{fields}}}""")!.AsObject();

    [Theory]
    [InlineData(""" "caller": ["caller1", "someone"], "status": 200 """, """{"caller": "caller1"}""", "USING INDEX doc_decisions_")]
    [InlineData(""" "caller": ["caller1", "someone"], "status": 200 """, """{"caller": {"$in": ["someone", "caller2"]}}""", "USING INDEX doc_decisions_")]
    [InlineData(""" "caller": 7.0, "status": 200 """, """{"caller": 7}""", "USING INDEX doc_decisions_")]
    [InlineData(""" "caller": 7.0, "status": 200 """, """{"caller": {"$in": [7, "caller2"]}, "outcome": {"$exists": false}}""", "USING INDEX doc_decisions_")]
    [InlineData(""" "caller": "caller1", "outcome": ["error", "result"] """, """{"outcome": "error"}""", "USING INDEX doc_decisions_")]
    public async Task An_array_or_a_fraction_in_an_indexed_field_is_still_found(string fields, string filter, string index)
    {
        var store = await StoreWithSamples();
        var at = DecisionData.Start.AddMilliseconds(100);
        var id = DecisionSamples.IdAt(at, 0xabc);
        await store.CreateAsync(Collections.Decisions, id, Body(id, at, fields), Ct);
        var docs = await DecisionSamples.ReadAllAsync(store);
        await DecisionQueryTests.AssertSameAsCore(store, docs, [filter, """{"function_id": "f1"}"""], [[SortKey.ById(SortDirection.Desc)], [new SortKey("at", SortDirection.Desc)]], [(0, 100), (0, 1000)]);
        (await store.QueryAsync(Collections.Decisions, new DocumentQuery(FilterParser.Parse(JsonNode.Parse(filter)), []), Ct)).Select(d => d.Id).ShouldContain(id);
        var plan = await store.ExplainAsync(Collections.Decisions, new DocumentQuery(FilterParser.Parse(JsonNode.Parse(filter)), [SortKey.ById(SortDirection.Desc)]), Ct);
        plan.ShouldNotContain(index, Case.Sensitive, "with such a decision about, the index cannot answer");
    }

    [Fact]
    public async Task Decisions_from_before_1970_are_sorted_by_at_as_Core_sorts_them()
    {
        var store = await StoreWithSamples();
        foreach (var (at, counter) in new[] { (new DateTimeOffset(1969, 12, 31, 23, 59, 59, 999, TimeSpan.Zero), 1), (new DateTimeOffset(1960, 1, 1, 0, 0, 0, TimeSpan.Zero), 2), (DateTimeOffset.UnixEpoch, 3) })
        {
            var id = DecisionSamples.IdAt(at, counter);
            await store.CreateAsync(Collections.Decisions, id, Body(id, at, """ "caller": "caller1", "status": 200 """), Ct);
        }
        var docs = await DecisionSamples.ReadAllAsync(store);
        await DecisionQueryTests.AssertSameAsCore(store, docs,
            ["{}", """{"at": {"$lt": "1970-01-01T00:00:00.001Z"}}""", """{"at": {"$gte": "1969-12-31T23:59:59.999Z"}}""", """{"at": {"$lte": "1965"}}"""],
            [[new SortKey("at", SortDirection.Desc)], [new SortKey("at", SortDirection.Asc)], [SortKey.ById(SortDirection.Desc)]], [(0, 5), (0, 1000)]);
    }
}
