using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Jobs;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
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
}
