using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Executor;

/// <summary>
/// The policy-executor app's decision log (the one its Type 2 calls are recorded in) reads <c>Decisions:WhenUnrecorded</c>
/// from the app's configuration, and a wrong value stops the app at start naming it.
/// </summary>
public sealed class ExecutorUnrecordedCallsTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Directory.CreateTempSubdirectory("pg-executor-unrecorded-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private ExecutorAppFactory App(DecisionStoreOutage outage, string? whenUnrecorded)
    {
        var app = new ExecutorAppFactory(realPolicies: true)
        {
            TestServices = services =>
            {
                services.RemoveAll<IDocumentStore>();
                services.AddSingleton<IDocumentStore>(outage);
            },
        };
        if (whenUnrecorded is not null) app.Settings["PolicyGrid:Runtime:Decisions:WhenUnrecorded"] = whenUnrecorded;
        return app;
    }

    private DecisionStoreOutage Outage() => new(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db"))));

    [Theory]
    [InlineData("refuse", true)]
    [InlineData("serve", false)]
    public async Task The_apps_decision_log_refuses_calls_while_it_loses_decisions_only_when_set_to(string whenUnrecorded, bool refuses)
    {
        var outage = Outage();
        using var app = App(outage, whenUnrecorded);
        var decisions = app.Services.GetRequiredService<DecisionLog>();

        await outage.LoseADecisionAsync(decisions, Ct);

        if (refuses) DecisionStoreOutage.ShouldBeItsRefusal(Should.Throw<PolicyGridException>(decisions.EnsureRecording));
        else decisions.EnsureRecording();
    }

    [Fact]
    public async Task A_choice_other_than_serve_or_refuse_stops_the_app_at_start_naming_the_setting()
    {
        // The app's own entry point, as `dotnet PolicyGrid.Executor.dll --PolicyGrid:...=fail-closed` runs it. Through
        // WebApplicationFactory the app's failed start raced the factory's own look at the host it had already disposed
        // (ObjectDisposedException instead of the app's error, in one full run), as the functions app's test did.
        var entry = typeof(Program).Assembly.EntryPoint!;
        string[] args = ["--urls", "http://127.0.0.1:0", "--PolicyGrid:Runtime:Decisions:WhenUnrecorded", "fail-closed"];

        var run = Task.Run(() => entry.Invoke(null, [args]), Ct);

        var stopped = await Should.ThrowAsync<System.Reflection.TargetInvocationException>(() => run.WaitAsync(TimeSpan.FromSeconds(60), Ct));
        var refused = stopped.InnerException.ShouldBeOfType<OptionsValidationException>();
        refused.Message.ShouldContain("PolicyGrid:Runtime:Decisions:WhenUnrecorded is 'fail-closed'; it must be serve");
    }
}
