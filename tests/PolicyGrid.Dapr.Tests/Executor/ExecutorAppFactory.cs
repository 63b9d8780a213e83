using System.Text.Json.Nodes;
using Dapr.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using NSubstitute;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Tests.Adapters;

namespace PolicyGrid.Dapr.Tests.Executor;

/// <summary>
/// The policy-executor app as it runs under Dapr, with the sidecar replaced at its seam: the
/// DaprClient (what the app publishes) is a substitute, and the built-in executor behind
/// inproc://local is a substitute too, so each test decides what the policy does.
/// </summary>
public sealed class ExecutorAppFactory : WebApplicationFactory<Program>
{
    private readonly bool realPolicies;

    /// <summary>
    /// With <paramref name="sidecar"/>, the app's DaprClient is that fake state store (shared with other
    /// apps, as a real state store is); with <paramref name="realPolicies"/>, policies run in the app's own
    /// Python workers instead of the substitute.
    /// </summary>
    public ExecutorAppFactory(FakeStateStore? sidecar = null, bool realPolicies = false)
    {
        this.realPolicies = realPolicies;
        Dapr = sidecar?.Client ?? Substitute.For<DaprClient>();
        Dapr.PublishEventAsync(DaprNames.Components.PubSub, Arg.Any<string>(), Arg.Any<JsonObject>(), Arg.Any<Dictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c =>
            {
                lock (Published) Published.Add((c.ArgAt<string>(1), c.ArgAt<JsonObject>(2), c.ArgAt<Dictionary<string, string>>(3)));
                return Task.CompletedTask;
            });
    }

    public DaprClient Dapr { get; }
    public IPolicyExecutor Policies { get; } = Substitute.For<IPolicyExecutor>();
    public Dictionary<string, string?> Settings { get; } = new();

    /// <summary>Changes to the app's composition, applied after its own registrations (replace a service with a double).</summary>
    public Action<IServiceCollection>? TestServices { get; init; }

    /// <summary>Everything the app published, in order: (topic, data, metadata).</summary>
    public List<(string Topic, JsonObject Data, Dictionary<string, string> Metadata)> Published { get; } = [];

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("PolicyGrid:Runtime:Pool:Workers", "1");
        foreach (var (key, value) in Settings) builder.UseSetting(key, value);
        builder.ConfigureTestServices(services =>
        {
            services.RemoveAll<DaprClient>();
            services.AddSingleton(Dapr);
            TestServices?.Invoke(services);
            if (realPolicies) return;
            var local = Substitute.For<IExecutorTransport>();
            local.CanHandle(Arg.Is<Uri>(u => u.Scheme == "inproc")).Returns(true);
            local.For(Arg.Any<Uri>()).Returns(Policies);
            // First, so it wins over any inproc transport the runtime registers.
            services.Insert(0, ServiceDescriptor.Singleton(local));
        });
    }
}
