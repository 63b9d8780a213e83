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

        await new DaprExecutorRegistration(store, NullLogger<DaprExecutorRegistration>.Instance).StartAsync(Ct);

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

        await new DaprExecutorRegistration(store, NullLogger<DaprExecutorRegistration>.Instance).StartAsync(Ct);

        (await store.GetAsync(Collections.Executors, "dapr", Ct))!.Body["executor_status"]!.GetValue<string>().ShouldBe("draining");
    }

    [Fact]
    public async Task A_sidecar_that_is_not_up_yet_does_not_stop_the_registry()
    {
        var store = Substitute.For<IDocumentStore>();
        store.GetAsync(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<CancellationToken>()).ThrowsAsync(Problems.BackendUnavailable("sidecar not ready"));

        await new DaprExecutorRegistration(store, NullLogger<DaprExecutorRegistration>.Instance).StartAsync(Ct);

        await store.DidNotReceiveWithAnyArgs().CreateAsync(default!, default!, default!, default);
    }
}
