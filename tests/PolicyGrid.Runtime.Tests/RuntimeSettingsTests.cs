using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Execution;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>Runtime settings are checked at start, and decision log retention keeps a busy log near its bound.</summary>
public sealed class RuntimeSettingsTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Directory.CreateTempSubdirectory("pg-runtime-settings-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Theory]
    [InlineData("Decisions:MaxCount", "-1", "0 or more")]
    [InlineData("Decisions:MaxAge", "-1.00:00:00", "zero or more")]
    [InlineData("Decisions:PruneInterval", "00:00:00", "greater than zero")]
    [InlineData("Decisions:QueueCapacity", "0", "1 or more")]
    [InlineData("Decisions:CommitInterval", "-00:00:01", "zero or more")]
    [InlineData("Decisions:RetryInterval", "00:00:00", "greater than zero")]
    [InlineData("Decisions:WhenUnrecorded", "closed", "serve (run calls the decision log cannot record) or refuse (answer them 503)")]
    [InlineData("Decisions:WhenUnrecorded", "", "serve (run calls the decision log cannot record) or refuse (answer them 503)")]
    [InlineData("Execution:DefaultTimeout", "00:00:00", "greater than zero")]
    [InlineData("Execution:MaxTimeout", "-00:00:05", "greater than zero")]
    [InlineData("RemoteExecutors:FunctionCallTimeout", "00:00:00", "greater than zero")]
    [InlineData("Pool:Workers", "0", "1 or more")]
    [InlineData("Pool:MaxResidentPolicies", "0", "1 or more")]
    [InlineData("Pool:WorkerUidStart", "0", "1 or more (0 is root)")]
    [InlineData("Pool:WorkerUidBase", "0", "unset or 1 or more (0 is root)")]
    public void A_setting_out_of_range_is_refused_at_start_naming_it(string setting, string value, string rule)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            [$"PolicyGrid:Runtime:{setting}"] = value,
        }).Build();
        var collection = new ServiceCollection();
        collection.AddLogging();
        collection.AddPolicyRuntime(configuration);
        using var services = collection.BuildServiceProvider();

        var error = Should.Throw<OptionsValidationException>(() => services.GetRequiredService<PolicyRuntimeOptions>());

        error.Failures.ShouldHaveSingleItem().ShouldStartWith($"PolicyGrid:Runtime:{setting} is ");
        error.Message.ShouldContain($"it must be {rule}");
    }

    [Theory]
    [InlineData("http://edge.internal:8080/execute")]
    [InlineData("ftp://edge.internal")]
    [InlineData("edge.internal:8080")]
    [InlineData("http://edge.internal:8080/?q=1")]
    public void A_token_node_that_is_not_an_executor_address_is_refused_at_start_naming_it(string entry)
    {
        var options = new PolicyRuntimeOptions { RemoteExecutors = { Token = "t", TokenNodes = ["http://fine:80", entry] } };

        var result = new PolicyRuntimeOptionsValidator().Validate(null, options);

        result.Failures.ShouldNotBeNull().ShouldHaveSingleItem().ShouldBe(
            $"PolicyGrid:Runtime:RemoteExecutors:TokenNodes:1 is '{entry}'; it must be an executor address without a path: http(s)://host:port or dapr://app-id");
    }

    [Theory]
    [InlineData("http://edge.internal:8080", true)]
    [InlineData("HTTP://Edge.Internal:8080/", true)]
    [InlineData("http://edge.internal:8081", false)]
    [InlineData("https://edge.internal:8080", false)]
    [InlineData("http://other:8080", false)]
    [InlineData("http://plain", true)] // http://plain:80 is listed
    [InlineData("dapr://Policy-Executor", true)]
    [InlineData("dapr://policy-functions", false)]
    public void The_node_token_goes_only_to_a_listed_node(string executorHostUri, bool sent)
    {
        var remote = new RemoteExecutorOptions { Token = "secret", TokenNodes = ["http://edge.internal:8080", "http://plain:80/", "dapr://policy-executor"] };

        remote.TokenFor(new Uri(executorHostUri)).ShouldBe(sent ? "secret" : null);
    }

    [Fact]
    public void Without_a_list_the_node_token_goes_to_every_node_and_without_a_token_nothing_is_sent()
    {
        new RemoteExecutorOptions { Token = "secret" }.TokenFor(new Uri("http://anywhere:1")).ShouldBe("secret");
        new RemoteExecutorOptions { TokenNodes = ["http://anywhere:1"] }.TokenFor(new Uri("http://anywhere:1")).ShouldBeNull();
    }

    [Theory]
    [InlineData("serve")]
    [InlineData("refuse")]
    [InlineData("Refuse")]
    public void Either_choice_for_calls_the_decision_log_cannot_record_passes(string choice)
    {
        new PolicyRuntimeOptionsValidator().Validate(null, new PolicyRuntimeOptions { Decisions = { WhenUnrecorded = choice } }).Succeeded.ShouldBeTrue();
    }

    [Fact]
    public void The_default_settings_pass()
    {
        new PolicyRuntimeOptionsValidator().Validate(null, new PolicyRuntimeOptions()).Succeeded.ShouldBeTrue();
    }

    [Fact]
    public async Task A_busy_log_is_pruned_before_its_interval_once_a_quarter_of_its_bound_is_written()
    {
        var store = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));
        var options = new DecisionLogOptions { MaxCount = 8, PruneInterval = TimeSpan.FromHours(1), CommitInterval = TimeSpan.Zero };
        await using var log = new DecisionLog(store, options, TimeProvider.System, NullLogger<DecisionLog>.Instance);
        using var retention = new DecisionRetention(log, options, TimeProvider.System, NullLogger<DecisionRetention>.Instance);
        await retention.StartAsync(Ct);
        try
        {
            for (var i = 0; i < 40; i++)
                await log.RecordAsync(new Decision("execute", "p:1.0-a", "sha", "anonymous", "p:1.0-a", $"input-{i}", Decision.OutcomeResult, "", 200, 0.1, DateTimeOffset.UtcNow));
            await log.FlushAsync(Ct);

            // Checked every second; the hour-long interval is far off.
            var deadline = DateTime.UtcNow.AddSeconds(20);
            int count;
            while ((count = (await store.QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct)).Count) > 8 && DateTime.UtcNow < deadline)
                await Task.Delay(100, Ct);
            count.ShouldBe(8);
        }
        finally
        {
            await retention.StopAsync(CancellationToken.None);
        }
    }
}
