using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Graphs;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>Records of asynchronous graph runs stay bounded, and a run that may still be going keeps its record.</summary>
public sealed class GraphExecutionRetentionTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Directory.CreateTempSubdirectory("pg-graph-retention-").FullName;
    private readonly SqliteDocumentStore store;

    public GraphExecutionRetentionTests() => store = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private async Task AddAsync(string id, string status, TimeSpan age)
    {
        var created = DateTimeOffset.UtcNow - age;
        await store.CreateAsync(Collections.GraphExecutions, id, new JsonObject
        {
            ["execution_id"] = id, ["graph_uri"] = "g:1-t", ["status"] = status, ["result"] = new JsonObject(), ["error"] = "",
            ["created_at"] = Timestamps.Format(created), ["finished_at"] = status == ExecutionStatus.Running ? "" : Timestamps.Format(created.AddSeconds(1)),
        }, Ct);
    }

    private GraphExecutionRetention Retention(GraphExecutionOptions options) =>
        new(store, Options.Create(options), TimeProvider.System, NullLogger<GraphExecutionRetention>.Instance);

    private async Task<string[]> KeptAsync() =>
        [.. (await store.QueryAsync(Collections.GraphExecutions, DocumentQuery.All(), Ct)).Select(d => d.Id).Order(StringComparer.Ordinal)];

    [Fact]
    public async Task Old_records_go_and_only_the_newest_finished_are_kept_while_runs_still_going_stay()
    {
        await AddAsync("old-done", ExecutionStatus.Succeeded, TimeSpan.FromDays(2));
        await AddAsync("old-cut-off", ExecutionStatus.Running, TimeSpan.FromDays(2)); // its server died: it is not running any more
        for (var i = 0; i < 4; i++) await AddAsync($"done-{i}", i % 2 == 0 ? ExecutionStatus.Succeeded : ExecutionStatus.Failed, TimeSpan.FromMinutes(10 - i));
        await AddAsync("going-1", ExecutionStatus.Running, TimeSpan.FromMinutes(20));
        await AddAsync("going-2", ExecutionStatus.Running, TimeSpan.FromMinutes(1));
        var retention = Retention(new GraphExecutionOptions { KeepExecutionsFor = TimeSpan.FromDays(1), MaxFinishedExecutions = 2, MaxDeadlineSeconds = 3600 });

        (await retention.PruneAsync(Ct)).ShouldBe(4);

        (await KeptAsync()).ShouldBe(["done-2", "done-3", "going-1", "going-2"]);
        (await retention.PruneAsync(Ct)).ShouldBe(0);
    }

    [Fact]
    public async Task A_record_is_kept_as_long_as_its_run_could_last_even_when_the_keep_time_is_shorter()
    {
        await AddAsync("going", ExecutionStatus.Running, TimeSpan.FromMinutes(30));
        await AddAsync("done", ExecutionStatus.Succeeded, TimeSpan.FromMinutes(30));
        await AddAsync("ancient", ExecutionStatus.Succeeded, TimeSpan.FromHours(2));
        var retention = Retention(new GraphExecutionOptions { KeepExecutionsFor = TimeSpan.FromMinutes(5), MaxDeadlineSeconds = 3600 });

        (await retention.PruneAsync(Ct)).ShouldBe(1);

        (await KeptAsync()).ShouldBe(["done", "going"]);
    }

    [Fact]
    public async Task A_keep_time_reaching_back_before_1970_keeps_every_record_by_age()
    {
        await AddAsync("ancient", ExecutionStatus.Succeeded, TimeSpan.FromDays(3650));
        var retention = Retention(new GraphExecutionOptions { KeepExecutionsFor = TimeSpan.MaxValue });

        (await retention.PruneAsync(Ct)).ShouldBe(0);

        (await KeptAsync()).ShouldBe(["ancient"]);
    }

    [Theory]
    [InlineData("KeepExecutionsFor", "00:00:00", "greater than zero")]
    [InlineData("MaxFinishedExecutions", "-1", "0 or more")]
    [InlineData("PruneInterval", "-00:01:00", "greater than zero")]
    [InlineData("MaxDeadlineSeconds", "0", "a number greater than 0")]
    [InlineData("DefaultDeadlineSeconds", "-5", "a number greater than 0")]
    [InlineData("MaxParallelism", "0", "1 or more")]
    [InlineData("MaxNodes", "0", "1 or more")]
    [InlineData("MaxAsyncRuns", "0", "1 or more")]
    [InlineData("MaxAsyncRunsPerCaller", "0", "1 or more")]
    [InlineData("RetryAfterSeconds", "-1", "0 or more")]
    public void A_graph_setting_out_of_range_is_refused_naming_it(string setting, string value, string rule)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [$"PolicyGrid:Graphs:{setting}"] = value }).Build();
        var services = new ServiceCollection();
        services.AddGraphsApi(configuration);
        using var provider = services.BuildServiceProvider();

        var error = Should.Throw<OptionsValidationException>(() => provider.GetRequiredService<IOptions<GraphExecutionOptions>>().Value);

        error.Failures.ShouldHaveSingleItem().ShouldStartWith($"PolicyGrid:Graphs:{setting} is ");
        error.Message.ShouldContain($"it must be {rule}");
    }
}
