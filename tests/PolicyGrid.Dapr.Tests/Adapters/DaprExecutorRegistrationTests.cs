using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using NSubstitute;
using NSubstitute.ExceptionExtensions;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Invocation;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

public sealed class DaprExecutorRegistrationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Registers_executor_dapr_at_dapr_policy_executor_when_missing()
    {
        var store = new FakeStateStore().Store();

        await RunAsync(new DaprExecutorRegistration(store, NullLogger<DaprExecutorRegistration>.Instance));

        var stored = (await store.GetAsync(Collections.Executors, "dapr", Ct))!;
        var executor = PolicyExecutor.FromJson(stored.Body);
        executor.ExecutorHostUri.ShouldBe("dapr://policy-executor");
        executor.ExecutorStatus.ShouldBe("healthy");
    }

    [Fact]
    public async Task Keeps_an_operators_edits()
    {
        var store = new FakeStateStore().Store();
        var body = DaprExecutorRegistration.Document();
        body["executor_status"] = "draining";
        await store.CreateAsync(Collections.Executors, "dapr", body, Ct);

        await RunAsync(new DaprExecutorRegistration(store, NullLogger<DaprExecutorRegistration>.Instance));

        (await store.GetAsync(Collections.Executors, "dapr", Ct))!.Body["executor_status"]!.GetValue<string>().ShouldBe("draining");
    }

    [Fact]
    public async Task A_sidecar_that_is_not_up_yet_delays_the_registration_without_stopping_the_registry()
    {
        var real = new FakeStateStore().Store();
        var store = Substitute.For<IDocumentStore>();
        var calls = 0;
        store.GetAsync(Collections.Executors, "dapr", Arg.Any<CancellationToken>())
            .Returns(_ => ++calls <= 2 ? throw Problems.BackendUnavailable("sidecar not ready") : real.GetAsync(Collections.Executors, "dapr", Ct));
        store.CreateAsync(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<JsonObject>(), Arg.Any<CancellationToken>())
            .Returns(c => real.CreateAsync(c.ArgAt<string>(0), c.ArgAt<string>(1), c.ArgAt<JsonObject>(2), Ct));
        var registration = new DaprExecutorRegistration(store, NullLogger<DaprExecutorRegistration>.Instance) { RetryInterval = TimeSpan.FromMilliseconds(5) };

        await registration.StartAsync(Ct); // returns at once: the app starts while the sidecar is down
        await registration.ExecuteTask!.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        calls.ShouldBe(3);
        (await real.GetAsync(Collections.Executors, "dapr", Ct)).ShouldNotBeNull();
    }

    [Fact]
    public async Task Registration_gives_up_after_its_attempts()
    {
        var store = Substitute.For<IDocumentStore>();
        store.GetAsync(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<CancellationToken>()).ThrowsAsync(Problems.BackendUnavailable("sidecar not ready"));
        var registration = new DaprExecutorRegistration(store, NullLogger<DaprExecutorRegistration>.Instance) { RetryInterval = TimeSpan.FromMilliseconds(1), MaxAttempts = 3 };

        await RunAsync(registration);

        await store.Received(3).GetAsync(Collections.Executors, "dapr", Arg.Any<CancellationToken>());
        await store.DidNotReceiveWithAnyArgs().CreateAsync(default!, default!, default!, default);
    }

    private static async Task RunAsync(DaprExecutorRegistration registration)
    {
        await registration.StartAsync(Ct);
        await registration.ExecuteTask!.WaitAsync(TimeSpan.FromSeconds(10), Ct);
    }
}
