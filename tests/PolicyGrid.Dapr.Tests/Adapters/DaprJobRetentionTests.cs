using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using NSubstitute;
using PolicyGrid.Api.Jobs;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Dapr.Documents;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

/// <summary>Job retention over the Dapr document store, as the registry and executor apps run it on their shared store.</summary>
public sealed class DaprJobRetentionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Ended_jobs_past_the_limits_go_from_the_state_store_and_open_ones_stay()
    {
        var state = new FakeStateStore();
        var store = state.Store(DocumentQueryMode.KeyIndex);
        async Task Add(string id, string status, TimeSpan age)
        {
            var at = DateTimeOffset.UtcNow - age;
            await store.CreateAsync(Collections.Jobs, id, new Job
            {
                JobId = id, ExecutorId = "dapr", PolicyRuleUri = "batch:1.0", Status = status, CreatedAt = Timestamps.Format(at),
                FinishedAt = JobStatus.IsFinal(status) ? Timestamps.Format(at.AddSeconds(1)) : "",
            }.ToJson(), Ct);
        }
        await Add("old", JobStatus.Succeeded, TimeSpan.FromDays(8));
        await Add("old-running", JobStatus.Running, TimeSpan.FromDays(8));
        await Add("ended-0", JobStatus.Failed, TimeSpan.FromMinutes(3));
        await Add("ended-1", JobStatus.Cancelled, TimeSpan.FromMinutes(2));
        await Add("pending", JobStatus.Pending, TimeSpan.FromMinutes(1));
        var retention = new JobRetention(store, new JobResultTokens(store), new ServiceCollection().BuildServiceProvider(),
            Options.Create(new JobsOptions { KeepEndedJobsFor = TimeSpan.FromDays(7), MaxEndedJobs = 1 }), TimeProvider.System, NullLogger<JobRetention>.Instance);

        (await retention.PruneAsync(Ct)).ShouldBe(2);

        (await store.QueryAsync(Collections.Jobs, DocumentQuery.All(), Ct)).Select(d => d.Id).Order(StringComparer.Ordinal).ShouldBe(["ended-1", "old-running", "pending"]);
    }
    // Ended jobs, many ending in the same second (ties go by id), and 20 still running, straight into the state store.
    private static FakeStateStore Jobs(DocumentQueryMode mode, int ended)
    {
        var state = new FakeStateStore().WithIdQueries();
        var start = DateTimeOffset.UtcNow.AddDays(-1);
        var all = ended + 20;
        var ids = new List<string>();
        for (var i = 0; i < all; i++)
        {
            var id = $"job-{(i * 7919) % all:D4}"; // ids in another order than their ends
            var running = i >= ended;
            var at = start.AddSeconds(i / 3);
            state.Put(StateKeys.Document(Collections.Jobs, id), new StateDocument(Collections.Jobs, id, "r" + i, new Job
            {
                JobId = id, ExecutorId = "dapr", PolicyRuleUri = "batch:1.0", Status = running ? JobStatus.Running : JobStatus.Succeeded,
                CreatedAt = Timestamps.Format(at), FinishedAt = running ? "" : Timestamps.Format(at),
            }.ToJson()));
            ids.Add(id);
        }
        if (mode == DocumentQueryMode.KeyIndex) state.Put(StateKeys.Index(Collections.Jobs), new KeyIndex(ids));
        return state;
    }

    // Pages of 500, the default (the fixture's store pages by 2 to exercise paging).
    private static DaprStateDocumentStore StoreOf(FakeStateStore state, DocumentQueryMode mode) =>
        new(state.Client, Options.Create(new DaprOptions { DocumentQueries = mode, QueryPageSize = 500 }));

    private static async Task<(List<string> Left, List<string> LogsForgotten, int Reads, int IndexWrites)> SweepAsync(DocumentQueryMode mode, int ended, int keep, bool pagedOnly)
    {
        var state = Jobs(mode, ended);
        IDocumentStore store = StoreOf(state, mode);
        if (pagedOnly) store = new PlainDocumentStore(store);
        var launcher = Substitute.For<IJobLauncher>();
        var forgotten = new List<string>();
        launcher.ForgetAsync(Arg.Do<string>(forgotten.Add), Arg.Any<CancellationToken>()).Returns(Task.CompletedTask);
        var retention = new JobRetention(store, new JobResultTokens(store), new ServiceCollection().AddSingleton(launcher).BuildServiceProvider(),
            Options.Create(new JobsOptions { KeepEndedJobsFor = TimeSpan.Zero, MaxEndedJobs = keep }), TimeProvider.System, NullLogger<JobRetention>.Instance);

        (await retention.PruneAsync(Ct)).ShouldBe(ended - keep);

        var reads = state.BulkReadKeys + state.QueriedItems;
        var indexWrites = state.Client.ReceivedCalls().Count(c => c.GetMethodInfo().Name == nameof(global::Dapr.Client.DaprClient.TrySaveStateAsync)
            && c.GetArguments()[1] as string == StateKeys.Index(Collections.Jobs));
        var left = state.Entries.Keys.Where(k => k.StartsWith(Collections.Jobs + StateKeys.Separator, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        return (left, [.. forgotten.Order(StringComparer.Ordinal)], reads, indexWrites);
    }

    [Theory]
    // 2,500 ended, 500 kept: paging read the newest 500 again for each page of 1,000 it removed, then once more to find
    // none left (1,500 + 1,500 + 520); one pass reads each job once (this fake's query API answers the running ones
    // too, as a store given only part of a filter would).
    [InlineData(DocumentQueryMode.QueryApi, 2500, 500, 3520)]
    // A key index sorts by reading every job: paging read them all for each page and once more (620 + 120).
    [InlineData(DocumentQueryMode.KeyIndex, 600, 100, 740)]
    public async Task The_count_sweep_removes_what_paging_removed_and_reads_each_job_once(DocumentQueryMode mode, int ended, int keep, int pagedReads)
    {
        var paged = await SweepAsync(mode, ended, keep, pagedOnly: true);
        var ranked = await SweepAsync(mode, ended, keep, pagedOnly: false);

        ranked.Left.Count.ShouldBe(keep + 20);
        ranked.Left.ShouldBe(paged.Left);
        ranked.LogsForgotten.Count.ShouldBe(ended - keep);
        ranked.LogsForgotten.ShouldBe(paged.LogsForgotten);
        paged.Reads.ShouldBe(pagedReads);
        // Plus one bulk read of each removed job before it is deleted (one at a time, each delete read its job singly,
        // which this count leaves out).
        ranked.Reads.ShouldBe(ended + 20 + (ended - keep));
        // The removed jobs go in bulk, a page of 1,000 at a time, with one index update for each page, where one at a
        // time rewrote the whole index for every job.
        paged.IndexWrites.ShouldBe(mode == DocumentQueryMode.KeyIndex ? ended - keep : 0);
        ranked.IndexWrites.ShouldBe(mode == DocumentQueryMode.KeyIndex ? 1 : 0);
    }

    [Fact]
    public async Task With_no_more_jobs_than_it_keeps_the_count_sweep_reads_no_job_from_the_key_index()
    {
        var state = Jobs(DocumentQueryMode.KeyIndex, 2500);
        var store = StoreOf(state, DocumentQueryMode.KeyIndex);
        var retention = new JobRetention(store, new JobResultTokens(store), new ServiceCollection().BuildServiceProvider(),
            Options.Create(new JobsOptions { KeepEndedJobsFor = TimeSpan.Zero, MaxEndedJobs = 2520 }), TimeProvider.System, NullLogger<JobRetention>.Instance);

        (await retention.PruneAsync(Ct)).ShouldBe(0);

        state.BulkReadKeys.ShouldBe(0); // it read all 2,520 to find nothing beyond the newest 2,520
    }

    // Graph runs, many started in the same second (ties go by id), and 20 still running, straight into the state store.
    private static FakeStateStore GraphRuns(DocumentQueryMode mode, int finished)
    {
        var state = new FakeStateStore().WithIdQueries();
        var start = DateTimeOffset.UtcNow.AddHours(-1);
        var all = finished + 20;
        var ids = new List<string>();
        for (var i = 0; i < all; i++)
        {
            var id = $"run-{(i * 7919) % all:D4}"; // ids in another order than their starts
            state.Put(StateKeys.Document(Collections.GraphExecutions, id), new StateDocument(Collections.GraphExecutions, id, "r" + i, new System.Text.Json.Nodes.JsonObject
            {
                ["execution_id"] = id,
                ["status"] = i >= finished ? PolicyGrid.Api.Graphs.ExecutionStatus.Running : "succeeded",
                ["created_at"] = Timestamps.Format(start.AddSeconds(i / 3)),
            }));
            ids.Add(id);
        }
        if (mode == DocumentQueryMode.KeyIndex) state.Put(StateKeys.Index(Collections.GraphExecutions), new KeyIndex(ids));
        return state;
    }

    private static async Task<(List<string> Left, int Reads)> GraphSweepAsync(DocumentQueryMode mode, int finished, int keep, bool pagedOnly)
    {
        var state = GraphRuns(mode, finished);
        IDocumentStore store = StoreOf(state, mode);
        if (pagedOnly) store = new PlainDocumentStore(store);
        var retention = new PolicyGrid.Api.Graphs.GraphExecutionRetention(store, Options.Create(new PolicyGrid.Api.Graphs.GraphExecutionOptions { MaxFinishedExecutions = keep }),
            TimeProvider.System, NullLogger<PolicyGrid.Api.Graphs.GraphExecutionRetention>.Instance);

        (await retention.PruneAsync(Ct)).ShouldBe(finished - keep);

        var left = state.Entries.Keys.Where(k => k.StartsWith(Collections.GraphExecutions + StateKeys.Separator, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        // Every document read counts: in bulk, by query, and singly (a delete one at a time reads its run first).
        var single = state.Client.ReceivedCalls().Count(c => c.GetMethodInfo().Name == nameof(global::Dapr.Client.DaprClient.GetStateAndETagAsync)
            && c.GetMethodInfo().GetGenericArguments()[0] == typeof(StateDocument));
        return (left, state.BulkReadKeys + state.QueriedItems + single);
    }

    [Theory]
    // As for jobs: paging read the newest kept runs again for each page it removed, and once more to find none left.
    [InlineData(DocumentQueryMode.QueryApi, 2500, 500)]
    [InlineData(DocumentQueryMode.KeyIndex, 600, 100)]
    public async Task The_graph_run_count_sweep_removes_what_paging_removed_and_reads_each_run_once(DocumentQueryMode mode, int finished, int keep)
    {
        var paged = await GraphSweepAsync(mode, finished, keep, pagedOnly: true);
        var ranked = await GraphSweepAsync(mode, finished, keep, pagedOnly: false);

        ranked.Left.Count.ShouldBe(keep + 20);
        ranked.Left.ShouldBe(paged.Left);
        // Plus one read of each removed run before it is deleted, in bulk (one at a time, each delete read its run singly).
        ranked.Reads.ShouldBe(2 * (finished + 20) + (finished - keep), "each run read once by the age sweep (none is old enough) and once by the count sweep");
        paged.Reads.ShouldBeGreaterThan(ranked.Reads);
    }
}
