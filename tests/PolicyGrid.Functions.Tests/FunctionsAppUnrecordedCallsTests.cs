using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Functions;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.TestSupport;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// The policy-functions app's own decision log (the one its actors record function calls in) reads
/// <c>Decisions:WhenUnrecorded</c> from the app's configuration, and a wrong value stops the app at start naming it.
/// </summary>
public sealed class FunctionsAppUnrecordedCallsTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Directory.CreateTempSubdirectory("pg-functions-unrecorded-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private sealed class FunctionsApp(IDocumentStore documents, string? whenUnrecorded) : WebApplicationFactory<PolicyFunctionActor>
    {
        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            if (whenUnrecorded is not null) builder.UseSetting("PolicyGrid:Runtime:Decisions:WhenUnrecorded", whenUnrecorded);
            builder.ConfigureTestServices(services =>
            {
                services.RemoveAll<IDocumentStore>();
                services.AddSingleton(documents);
            });
        }
    }

    [Theory]
    [InlineData("refuse", true)]
    [InlineData(null, false)]
    public async Task The_apps_decision_log_refuses_calls_while_it_loses_decisions_only_when_set_to(string? whenUnrecorded, bool refuses)
    {
        var outage = new DecisionStoreOutage(new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db"))));
        await using var app = new FunctionsApp(outage, whenUnrecorded);
        var decisions = app.Services.GetRequiredService<DecisionLog>();
        decisions.EnsureRecording();

        await outage.LoseADecisionAsync(decisions, Ct);

        if (refuses) DecisionStoreOutage.ShouldBeItsRefusal(Should.Throw<PolicyGridException>(decisions.EnsureRecording));
        else decisions.EnsureRecording();
    }

    [Fact]
    public async Task A_choice_other_than_serve_or_refuse_stops_the_app_at_start_naming_the_setting()
    {
        // The app's own entry point, as `dotnet PolicyGrid.Functions.dll --PolicyGrid:...=closed` runs it. Through
        // WebApplicationFactory the app's failed start raced the factory's own look at the host it had already disposed:
        // one full run in four answered ObjectDisposedException instead of the app's error.
        var entry = typeof(PolicyFunctionActor).Assembly.EntryPoint!;
        string[] args = ["--urls", "http://127.0.0.1:0", "--PolicyGrid:Runtime:Decisions:WhenUnrecorded", "closed"];

        var run = Task.Run(() => entry.Invoke(null, [args]), Ct);

        var stopped = await Should.ThrowAsync<System.Reflection.TargetInvocationException>(() => run.WaitAsync(TimeSpan.FromSeconds(60), Ct));
        var refused = stopped.InnerException.ShouldBeOfType<OptionsValidationException>();
        refused.Message.ShouldContain("PolicyGrid:Runtime:Decisions:WhenUnrecorded is 'closed'; it must be serve");
    }
}
