using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

public sealed class DecisionLogTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Directory.CreateTempSubdirectory("pg-decisions-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static Decision Sample(int n) => new("execute", "p:1.0-a", "sha", "anonymous", "p:1.0-a", $"input-{n}", Decision.OutcomeResult, "", 200, 0.1, DateTimeOffset.UtcNow);

    [Fact]
    public async Task A_decision_is_stored_with_every_field_of_the_audit_trail()
    {
        var store = new CountingStore(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db"))));
        await using var log = new DecisionLog(store, new DecisionLogOptions(), TimeProvider.System, NullLogger<DecisionLog>.Instance);
        var at = new DateTimeOffset(2026, 11, 26, 1, 2, 3, 456, TimeSpan.FromHours(2));
        var decisions = new[]
        {
            new Decision("execute", "ip_allowlist:1.0-a", "bundle-sha", "ops", "key \"1\"", "input-sha", Decision.OutcomeResult, "", 200, 1.23456, at),
            new Decision("management", "ip_allowlist:1.0-a", "", "anonymous", "", "x", Decision.OutcomeError, "policy_error", 422, 0.0004, at),
        };
        foreach (var d in decisions) await log.RecordAsync(d);
        await log.FlushAsync(Ct);

        store.Writes.ShouldBe(1);
        var stored = await store.QueryAsync(Collections.Decisions, new DocumentQuery(new Core.Querying.AndFilter([]), [new SortKey("status", Core.Ports.SortDirection.Asc)], 0, 10), Ct);
        stored.Count.ShouldBe(2);
        var first = stored[0].Body;
        JsonNode.DeepEquals(first, new JsonObject
        {
            ["decision_id"] = stored[0].Id, ["kind"] = "execute", ["policy_rule_uri"] = "ip_allowlist:1.0-a", ["bundle_sha256"] = "bundle-sha",
            ["caller"] = "ops", ["context_key"] = "key \"1\"", ["input_sha256"] = "input-sha", ["outcome"] = "result", ["error_code"] = "",
            ["status"] = 200, ["duration_ms"] = 1.235, ["at"] = "2026-11-25T23:02:03.456Z",
        }).ShouldBeTrue(first.ToJsonString());
        stored[1].Body["error_code"]!.GetValue<string>().ShouldBe("policy_error");
        stored[1].Body["duration_ms"]!.GetValue<double>().ShouldBe(0.0);
        // The batch write and the one-at-a-time fallback store the same document.
        JsonNode.DeepEquals(first, decisions[0].ToJson(stored[0].Id)).ShouldBeTrue();
    }

    [Fact]
    public async Task A_decision_after_the_log_closed_is_logged_with_what_tells_the_call_apart()
    {
        // A graph node's call abandoned by its run records itself when it unwinds; at a stop past the shutdown timeout that
        // can be after the log closed, and this line is all that is left of it. It named only the policy and the caller.
        var logs = new CapturingLoggerProvider();
        var store = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));
        var log = new DecisionLog(store, new DecisionLogOptions(), TimeProvider.System, logs.CreateLogger<DecisionLog>());
        await log.DisposeAsync();
        var at = new DateTimeOffset(2026, 11, 20, 1, 2, 3, TimeSpan.Zero); // past: ids rise with the newest time any log has seen

        await log.RecordAsync(new Decision(Decision.KindFunctionCall, "node:1.0-a", "sha", "ops", "function:gate#0", "in", Decision.OutcomeError,
            "cancelled", 499, 20_000, at) { FunctionId = "gate", GraphId = "admission:1.0-beta", ExecutionId = "e1" });

        logs.Entries.ShouldContain((Microsoft.Extensions.Logging.LogLevel.Error,
            "decision lost: function_call of node:1.0-a for function gate in graph admission:1.0-beta (execution e1) by ops " +
            "(error, status 499 cancelled, at 2026-11-20T01:02:03.000Z) arrived after the log closed"));
    }

    [Fact]
    public async Task A_batch_stores_each_decision_byte_for_byte_in_the_logs_json()
    {
        // The stored text itself, not its parsed value: field order, escaping, the time cut (not rounded) to the
        // millisecond in UTC, the duration rounded to three decimals.
        var db = new SqliteDatabase(Path.Combine(dir, "policygrid.db"));
        var store = new CountingStore(new SqliteDocumentStore(db));
        await using var log = new DecisionLog(store, new DecisionLogOptions { CommitInterval = TimeSpan.FromMilliseconds(200) }, TimeProvider.System, NullLogger<DecisionLog>.Instance);
        var at = new DateTimeOffset(2026, 11, 26, 1, 2, 3, 456, TimeSpan.FromHours(2)).AddTicks(9999);
        Decision[] recorded =
        [
            new("execute", "ip_allowlist:1.0-a", "bundle-sha", "ops", "key \"1\" <&> +\u00e9\u2028\U0001F600", "input-sha", Decision.OutcomeResult, "", 200, 12345.6785, at),
            new("management", "p", "", "anonymous", "", "x", Decision.OutcomeError, "policy_error", 422, 0.0004, new DateTimeOffset(1999, 1, 2, 3, 4, 5, TimeSpan.Zero)),
        ];
        foreach (var d in recorded) await log.RecordAsync(d);
        await log.FlushAsync(Ct);

        store.Writes.ShouldBe(1);
        await using var connection = await db.OpenAsync(Ct);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id, body FROM doc_decisions ORDER BY revision";
        var rows = new List<(string Id, string Body)>();
        using (var reader = command.ExecuteReader())
        {
            while (reader.Read()) rows.Add((reader.GetString(0), reader.GetString(1)));
        }
        rows.Count.ShouldBe(2);
        rows[0].Body.ShouldBe($$"""{"decision_id":"{{rows[0].Id}}","kind":"execute","policy_rule_uri":"ip_allowlist:1.0-a","bundle_sha256":"bundle-sha","caller":"ops","context_key":"key \u00221\u0022 \u003C\u0026\u003E \u002B\u00E9\u2028\uD83D\uDE00","input_sha256":"input-sha","outcome":"result","error_code":"","status":200,"duration_ms":12345.678,"at":"2026-11-25T23:02:03.456Z"}""");
        rows[1].Body.ShouldBe($$"""{"decision_id":"{{rows[1].Id}}","kind":"management","policy_rule_uri":"p","bundle_sha256":"","caller":"anonymous","context_key":"","input_sha256":"x","outcome":"error","error_code":"policy_error","status":422,"duration_ms":0,"at":"1999-01-02T03:04:05.000Z"}""");
        // The one-at-a-time fallback stores the same text.
        recorded[0].ToJson(rows[0].Id).ToJsonString().ShouldBe(rows[0].Body);
    }

    [Fact]
    public async Task Decisions_recorded_from_many_threads_while_the_writer_runs_dry_and_waits_again_are_all_written()
    {
        // Each flush lets the writer empty the queue and wait for the next decision, which has to wake it.
        var store = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));
        await using var log = new DecisionLog(store, new DecisionLogOptions { CommitInterval = TimeSpan.Zero }, TimeProvider.System, NullLogger<DecisionLog>.Instance);
        await Task.WhenAll(Enumerable.Range(0, 8).Select(thread => Task.Run(async () =>
        {
            for (var i = 0; i < 100; i++)
            {
                await log.RecordAsync(Sample(thread * 1000 + i));
                if (i % 10 == 9) await log.FlushAsync(Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);
            }
        }, Ct)));

        log.Written.ShouldBe(800);
        var stored = await store.QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct);
        stored.Select(d => d.Body["input_sha256"]!.GetValue<string>()).Distinct().Count().ShouldBe(800);
    }

    [Fact]
    public async Task A_full_queue_makes_callers_wait_and_loses_nothing()
    {
        var store = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));
        await using var log = new DecisionLog(store, new DecisionLogOptions { QueueCapacity = 2, CommitInterval = TimeSpan.FromMilliseconds(1) }, TimeProvider.System, NullLogger<DecisionLog>.Instance);
        for (var i = 0; i < 50; i++) await log.RecordAsync(Sample(i));
        await log.FlushAsync(Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);

        (await store.QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct)).Count.ShouldBe(50);
    }

    [Fact]
    public async Task Decisions_arriving_within_the_commit_interval_share_one_durable_write()
    {
        var store = new CountingStore(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db"))));
        await using var log = new DecisionLog(store, new DecisionLogOptions { CommitInterval = TimeSpan.FromMilliseconds(300) }, TimeProvider.System, NullLogger<DecisionLog>.Instance);

        for (var i = 0; i < 5; i++) await log.RecordAsync(Sample(i));
        await log.FlushAsync(Ct);

        store.Writes.ShouldBe(1, "five decisions queued within the interval should go to disk in one transaction");
        (await store.QueryAsync(Collections.Decisions, new DocumentQuery(new Core.Querying.AndFilter([]), [], 0, 100), Ct)).Count.ShouldBe(5);
    }

    [Fact]
    public void Ids_rise_in_the_order_decisions_are_recorded_also_within_one_millisecond_and_are_version_7_uuids()
    {
        var at = DateTimeOffset.UtcNow.AddMinutes(1); // later than any id made so far in this process
        var ids = Enumerable.Range(0, 1000).Select(_ => DecisionLog.NewId(at)).ToList();
        ids.ShouldBe([.. ids.Order(StringComparer.Ordinal)]);
        ids.Distinct().Count().ShouldBe(1000);
        foreach (var id in ids)
        {
            id.ShouldMatch("^[0-9a-f]{32}$");
            var uuid = Guid.ParseExact(id, "N");
            uuid.Version.ShouldBe(7);
            id[..12].ShouldBe(DecisionLog.IdPrefixAt(at));
            "89ab".ShouldContain(id[16]); // variant 10
        }
        string.CompareOrdinal(DecisionLog.NewId(at.AddMilliseconds(1)), ids[^1]).ShouldBeGreaterThan(0);
    }

    [Fact]
    public void A_decision_id_starts_with_its_time_so_ids_sort_in_time_order()
    {
        var at = new DateTimeOffset(2026, 11, 26, 1, 2, 3, 456, TimeSpan.Zero);
        var prefix = DecisionLog.IdPrefixAt(at);

        prefix.ShouldBe(at.ToUnixTimeMilliseconds().ToString("x12"));
        string.CompareOrdinal(DecisionLog.IdPrefixAt(at.AddMilliseconds(-1)), prefix).ShouldBeLessThan(0);
        string.CompareOrdinal(prefix, DecisionLog.IdPrefixAt(at.AddMilliseconds(1))).ShouldBeLessThan(0);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_max_age_reaching_back_before_1970_keeps_every_decision_by_age(bool byId)
    {
        var sqlite = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));
        IDocumentStore store = byId ? sqlite : new CountingStore(sqlite);
        await using var log = new DecisionLog(store, new DecisionLogOptions { MaxAge = TimeSpan.MaxValue, MaxCount = 2, CommitInterval = TimeSpan.Zero }, TimeProvider.System, NullLogger<DecisionLog>.Instance);
        for (var i = 0; i < 3; i++) await log.RecordAsync(Sample(i) with { At = DateTimeOffset.UtcNow.AddYears(-20).AddMinutes(i) });
        await log.FlushAsync(Ct);

        (await log.PruneAsync(Ct)).ShouldBe(1); // only the count applies
        DecisionLog.Cutoff(DateTimeOffset.UtcNow, TimeSpan.FromDays(365 * 80)).ShouldBeNull();
    }

    [Fact]
    public async Task The_newest_decisions_in_id_order_are_the_newest_by_time_whatever_order_they_were_recorded_in()
    {
        // POST /decisions/query pages newest first in id order (the store's index) rather than sorting by "at".
        var store = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));
        await using var log = new DecisionLog(store, new DecisionLogOptions(), TimeProvider.System, NullLogger<DecisionLog>.Instance);
        var start = new DateTimeOffset(2026, 11, 26, 0, 0, 0, TimeSpan.Zero);
        var random = new Random(5);
        foreach (var ms in Enumerable.Range(0, 40).Select(i => i * 7).OrderBy(_ => random.Next()))
            await log.RecordAsync(Sample(ms) with { At = start.AddMilliseconds(ms) });
        await log.FlushAsync(Ct);
        var all = new Core.Querying.AndFilter([]);

        var byId = await store.QueryAsync(Collections.Decisions, new DocumentQuery(all, [SortKey.ById(Core.Ports.SortDirection.Desc)], 3, 10), Ct);
        var byTime = await store.QueryAsync(Collections.Decisions, new DocumentQuery(all, [new SortKey("at", Core.Ports.SortDirection.Desc)], 3, 10), Ct);

        byId.Select(d => d.Body["at"]!.GetValue<string>()).ShouldBe(byTime.Select(d => d.Body["at"]!.GetValue<string>()));
        byId[0].Body["at"]!.GetValue<string>().ShouldBe("2026-11-26T00:00:00.252Z"); // the 4th newest: 39 * 7 - 3 * 7 ms
    }

    [Fact]
    public async Task Retention_by_id_keeps_the_same_decisions_as_retention_by_query()
    {
        // The same 40 decisions (10 past MaxAge, 30 within it, kept down to 20) in a store that trims by id
        // and in one that only queries and deletes: both keep the same 20.
        var now = DateTimeOffset.UtcNow;
        var options = new DecisionLogOptions { MaxAge = TimeSpan.FromDays(1), MaxCount = 20, CommitInterval = TimeSpan.Zero };
        var decisions = Enumerable.Range(0, 40).Select(n => Sample(n) with { At = n < 10 ? now.AddDays(-2).AddMinutes(n) : now.AddMinutes(n - 40) }).ToArray();
        var kept = new List<string[]>();
        foreach (var (name, store) in new (string, IDocumentStore)[]
        {
            ("by id", new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "trim.db")))),
            ("by query", new CountingStore(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "query.db"))))),
        })
        {
            (store is IDocumentTrimStore).ShouldBe(name == "by id");
            await using var log = new DecisionLog(store, options, TimeProvider.System, NullLogger<DecisionLog>.Instance);
            foreach (var d in decisions.Reverse()) await log.RecordAsync(d);
            await log.FlushAsync(Ct);

            (await log.PruneAsync(Ct)).ShouldBe(20, name);
            (await log.PruneAsync(Ct)).ShouldBe(0, name);
            kept.Add([.. (await store.QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct)).Select(d => d.Body["input_sha256"]!.GetValue<string>()).Order()]);
        }
        kept[0].ShouldBe([.. Enumerable.Range(20, 20).Select(n => $"input-{n}").Order()]);
        kept[1].ShouldBe(kept[0]);
    }

    [Fact]
    public async Task After_a_failed_batch_write_batches_go_one_by_one_for_a_while_and_nothing_is_lost()
    {
        var clock = new ManualClock();
        var store = new BatchlessStore(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db"))));
        await using var log = new DecisionLog(store, new DecisionLogOptions { CommitInterval = TimeSpan.FromMilliseconds(200) }, clock, NullLogger<DecisionLog>.Instance);
        async Task RecordFive(int round)
        {
            for (var i = 0; i < 5; i++) await log.RecordAsync(Sample(round * 10 + i));
            await log.FlushAsync(Ct);
        }

        await RecordFive(0);
        await RecordFive(1);
        store.BatchAttempts.ShouldBe(1, "the second batch should not try the batch write again so soon");

        clock.Now += DecisionLog.BatchPause;
        await RecordFive(2);
        store.BatchAttempts.ShouldBe(2);
        (await store.QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct)).Count.ShouldBe(15);
    }

    [Fact]
    public async Task While_no_decision_can_be_recorded_the_log_says_so_once_then_counts_and_says_when_it_records_again()
    {
        // A store that was down failed every decision with an error line and its stack each: thousands of lines a second
        // on a busy executor, and nothing else told anyone the audit trail was not being kept.
        var clock = new ManualClock();
        var logs = new CapturingLoggerProvider();
        var store = new DecisionStoreOutage(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")))) { Down = true };
        await using var log = new DecisionLog(store, new DecisionLogOptions { CommitInterval = TimeSpan.Zero }, clock, logs.CreateLogger<DecisionLog>());

        // Beside the batch writes' own warning (once a minute, BatchPause): what is said of decisions lost.
        List<string> Said() => [.. logs.Entries.Select(e => e.Message).Where(m => !m.Contains("in one write", StringComparison.Ordinal))];

        for (var i = 0; i < 200; i++) await log.RecordAsync(Sample(i));
        await log.FlushAsync(Ct);

        var failing = log.Failure.ShouldNotBeNull();
        failing.Lost.ShouldBe(200);
        failing.Since.ShouldBe(clock.Now);
        Said().Count.ShouldBe(1);
        Said().Single().ShouldStartWith("could not record the decision for p:1.0-a by anonymous (result); decisions that cannot be recorded are held");

        clock.Now += DecisionLog.LossReportInterval;
        await log.RecordAsync(Sample(200));
        await log.FlushAsync(Ct);
        Said().Count.ShouldBe(2);
        Said().Last().ShouldStartWith("could not record 200 decisions in the last 00:00:30 (201 since ");
        Said().Last().ShouldContain(", 201 held to be written again): ");

        store.Down = false;
        await log.RecordAsync(Sample(201));
        await log.FlushAsync(Ct);
        log.Failure.ShouldBeNull();
        Said().Count.ShouldBe(3);
        Said().Last().ShouldStartWith("decisions are recorded again; 201 could not be recorded when made, from ");
        Said().Last().ShouldEndWith(": 201 were written late, 0 lost (more were waiting than the log holds)");
        (await store.QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct)).Count.ShouldBe(202, "the decisions refused meanwhile were held, not dropped");
    }

    [Fact]
    public async Task Decisions_the_store_refused_are_written_once_it_takes_them_again_with_no_other_decision_to_write()
    {
        // They were dropped at the first refusal: a store down for a second lost every decision of that second for good,
        // and a log with nothing more to write stayed failing (readiness 503, and with refuse every call refused) until
        // some call came and was recorded.
        var store = new DecisionStoreOutage(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")))) { Down = true };
        await using var log = new DecisionLog(store, new DecisionLogOptions { CommitInterval = TimeSpan.Zero, RetryInterval = TimeSpan.FromMilliseconds(20) },
            TimeProvider.System, NullLogger<DecisionLog>.Instance);
        for (var i = 0; i < 5; i++) await log.RecordAsync(Sample(i));
        await log.FlushAsync(Ct);
        log.Failure.ShouldNotBeNull().Lost.ShouldBe(5);

        store.Down = false;
        var until = DateTime.UtcNow.AddSeconds(20);
        while (log.Failure is not null && DateTime.UtcNow < until) await Task.Delay(10, Ct);

        log.Failure.ShouldBeNull("the held decisions were written again without any other to write");
        var recorded = await store.QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct);
        recorded.Select(d => d.Body["input_sha256"]!.GetValue<string>()).Order().ToList().ShouldBe(new List<string> { "input-0", "input-1", "input-2", "input-3", "input-4" }, "every one of them");
    }

    [Fact]
    public async Task Past_the_queue_capacity_refused_decisions_are_dropped_and_counted()
    {
        var store = new DecisionStoreOutage(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")))) { Down = true };
        var logs = new CapturingLoggerProvider();
        await using var log = new DecisionLog(store, new DecisionLogOptions { CommitInterval = TimeSpan.Zero, QueueCapacity = 3, RetryInterval = TimeSpan.FromHours(1) },
            TimeProvider.System, logs.CreateLogger<DecisionLog>());
        for (var i = 0; i < 5; i++) await log.RecordAsync(Sample(i));
        await log.FlushAsync(Ct);
        (log.Failure!.Lost, log.Failure.Dropped).ShouldBe((5, 2));

        store.Down = false;
        await log.RecordAsync(Sample(5));
        await log.FlushAsync(Ct);

        log.Failure.ShouldBeNull();
        logs.Entries.Last().Message.ShouldEndWith(": 3 were written late, 2 lost (more were waiting than the log holds)");
        (await store.QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct)).Count.ShouldBe(4, "the three held and the new one");
    }

    [Fact]
    public async Task With_refuse_calls_are_refused_before_they_run_while_decisions_are_lost_and_run_again_once_a_refusal_is_recorded()
    {
        var store = new DecisionStoreOutage(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db"))));
        await using var log = new DecisionLog(store, new DecisionLogOptions { CommitInterval = TimeSpan.Zero, WhenUnrecorded = "refuse", RetryInterval = TimeSpan.FromHours(1) }, TimeProvider.System,
            NullLogger<DecisionLog>.Instance);
        var runs = 0;
        Task<int> Call() => new AuditTrail("execute", "p:1.0-a", CallerIdentity.Anonymous, "p:1.0-a", "sha").RunAsync(log, () => Task.FromResult(++runs));
        store.Down = true;
        (await Call()).ShouldBe(1, "nothing is lost yet when it starts");
        await log.FlushAsync(Ct);

        var refused = await Should.ThrowAsync<Core.Errors.PolicyGridException>(Call);

        runs.ShouldBe(1);
        DecisionStoreOutage.ShouldBeItsRefusal(refused);
        refused.Message.ShouldBe($"the decision log cannot record decisions since {DecisionLog.FormatTime(log.Failure!.Since)}: {DecisionStoreOutage.Refusal}; "
            + "this executor refuses calls it cannot record (Decisions:WhenUnrecorded=refuse)");

        store.Down = false;
        await Should.ThrowAsync<Core.Errors.PolicyGridException>(Call);
        runs.ShouldBe(1);
        await log.FlushAsync(Ct);
        log.Failure.ShouldBeNull("the refusal's own record ended the failure");
        (await Call()).ShouldBe(2);
        await log.FlushAsync(Ct);
        var recorded = (await store.QueryAsync(Collections.Decisions, new DocumentQuery(new Core.Querying.AndFilter([]), [SortKey.ById(Core.Ports.SortDirection.Asc)], 0, 10), Ct))
            .Select(d => (d.Body["status"]!.GetValue<int>(), d.Body["error_code"]!.GetValue<string>())).ToList();
        recorded.ShouldBe([(200, ""), (503, Core.Errors.ErrorCodes.BackendUnavailable), (503, Core.Errors.ErrorCodes.BackendUnavailable), (200, "")],
            "the call that ran and the refusal the store refused were held and written once it took one again");
    }

    [Fact]
    public async Task By_default_calls_run_while_decisions_are_lost()
    {
        var store = new DecisionStoreOutage(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")))) { Down = true };
        await using var log = new DecisionLog(store, new DecisionLogOptions { CommitInterval = TimeSpan.Zero }, TimeProvider.System, NullLogger<DecisionLog>.Instance);
        var runs = 0;
        Task<int> Call() => new AuditTrail("execute", "p:1.0-a", CallerIdentity.Anonymous, "p:1.0-a", "sha").RunAsync(log, () => Task.FromResult(++runs));
        await Call();
        await log.FlushAsync(Ct);
        log.Failure.ShouldNotBeNull();

        (await Call()).ShouldBe(2);
    }

    private sealed class ManualClock : TimeProvider
    {
        public DateTimeOffset Now = DateTimeOffset.UtcNow;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    /// <summary>A store whose batch write always fails, as MongoDB's does without a replica set.</summary>
    private sealed class BatchlessStore(SqliteDocumentStore inner) : DelegatingStore(inner), IDocumentBatchStore
    {
        public int BatchAttempts;

        public Task CreateManyAsync<T>(string collection, IReadOnlyList<T> items, Func<T, string> id, Action<System.Text.Json.Utf8JsonWriter, T> write, CancellationToken ct = default)
        {
            Interlocked.Increment(ref BatchAttempts);
            throw Core.Errors.Problems.BackendError("Transaction numbers are only allowed on a replica set member or mongos");
        }
    }

    /// <summary>Counts write transactions (one per CreateAsync, one per CreateManyAsync).</summary>
    private sealed class CountingStore(SqliteDocumentStore inner) : DelegatingStore(inner), IDocumentBatchStore
    {
        public int Writes;

        public override Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default)
        {
            Interlocked.Increment(ref Writes);
            return base.CreateAsync(collection, id, body, ct);
        }

        public Task CreateManyAsync<T>(string collection, IReadOnlyList<T> items, Func<T, string> id, Action<System.Text.Json.Utf8JsonWriter, T> write, CancellationToken ct = default)
        {
            Interlocked.Increment(ref Writes);
            return Inner.CreateManyAsync(collection, items, id, write, ct);
        }
    }

    /// <summary>The SQLite store seen only as an <see cref="IDocumentStore"/> (no bulk trimming, no write counter), for stores that add one part of it.</summary>
    internal abstract class DelegatingStore(SqliteDocumentStore inner) : IDocumentStore
    {
        protected SqliteDocumentStore Inner => inner;

        public virtual Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) => inner.GetAsync(collection, id, ct);
        public virtual Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.CreateAsync(collection, id, body, ct);
        public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) => inner.ReplaceAsync(collection, id, body, expectedRevision, ct);
        public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.UpsertAsync(collection, id, body, ct);
        public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => inner.DeleteAsync(collection, id, expectedRevision, ct);
        public virtual Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => inner.QueryAsync(collection, query, ct);
    }
}
