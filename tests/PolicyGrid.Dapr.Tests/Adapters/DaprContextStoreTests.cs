using System.Text.Json.Nodes;
using Dapr.Client;
using NSubstitute;
using PolicyGrid.Dapr.Context;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

public sealed class DaprContextStoreTests
{
    private const string Store = DaprNames.Components.CacheStore;
    private readonly DaprClient dapr = Substitute.For<DaprClient>();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(90.0, "90")]
    [InlineData(1.2, "2")]
    [InlineData(0.01, "1")]
    public async Task A_ttl_travels_as_ttlInSeconds_metadata_rounded_up(double seconds, string expected)
    {
        var context = new JsonObject { ["hits"] = 3 };

        await new DaprContextStore(dapr).SetAsync("ip:1.0-beta", context, TimeSpan.FromSeconds(seconds), Ct);

        await dapr.Received(1).SaveStateAsync(Store, "context/ip:1.0-beta", context, Arg.Any<StateOptions>(),
            Arg.Is<IReadOnlyDictionary<string, string>>(m => m.Count == 1 && m["ttlInSeconds"] == expected), Arg.Any<CancellationToken>());
    }

    [Theory]
    [InlineData("tenant||7", "context/tenant%7C%7C7")]
    [InlineData("tenant|%7C7", "context/tenant%7C%257C7")]
    public async Task A_context_key_holding_daprds_separator_still_makes_a_key_it_accepts(string contextKey, string stateKey)
    {
        // daprd refuses any state key holding "||" with InvalidArgument; a caller's context_key may hold it.
        await new DaprContextStore(dapr).SetAsync(contextKey, new JsonObject(), null, Ct);

        await dapr.Received(1).SaveStateAsync(Store, stateKey, Arg.Any<JsonObject>(), Arg.Any<StateOptions>(),
            Arg.Any<IReadOnlyDictionary<string, string>?>(), Arg.Any<CancellationToken>());
    }

    [Fact]
    public async Task Without_a_ttl_the_components_default_applies()
    {
        await new DaprContextStore(dapr).SetAsync("k", new JsonObject(), null, Ct);

        await dapr.Received(1).SaveStateAsync(Store, "context/k", Arg.Any<JsonObject>(), Arg.Any<StateOptions>(),
            Arg.Is<IReadOnlyDictionary<string, string>?>(m => m == null), Arg.Any<CancellationToken>());
    }

    [Fact]
    public async Task Reads_and_deletes_the_same_key()
    {
        dapr.GetStateAsync<JsonObject>(Store, "context/k", Arg.Any<ConsistencyMode?>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(new JsonObject { ["seen"] = true });
        var store = new DaprContextStore(dapr);

        (await store.GetAsync("k", Ct))!["seen"]!.GetValue<bool>().ShouldBeTrue();
        (await store.GetAsync("other", Ct)).ShouldBeNull();
        await store.DeleteAsync("k", Ct);

        await dapr.Received(1).DeleteStateAsync(Store, "context/k", Arg.Any<StateOptions>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>());
    }
}
