using System.Security.Cryptography;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Containers;
using DotNet.Testcontainers.Networks;
using PolicyGrid.TestSupport;

namespace PolicyGrid.Dapr.EndToEnd.Tests;

/// <summary>
/// The distributed shape for real: Redis, one daprd per app (containers on one network, loading
/// this repository's components/ with Redis at its network alias), and the registry and executor
/// apps as processes on the host. Started once for the suite, and only where a container engine
/// answers; elsewhere every test skips with <see cref="ContainerEngine.Reason"/>.
/// The sidecars reach their apps from their containers (host.docker.internal), not over loopback, so the apps
/// listen on every interface and carry the credentials that needs, as in Kubernetes: the registry API tokens
/// (<see cref="RegistryToken"/>, which the tests send), the executor the app API token its daprd sends.
/// </summary>
public sealed class DaprShape : IAsyncLifetime
{
    /// <summary>The daprd image; override with POLICYGRID_DAPRD_IMAGE to match your Dapr runtime.</summary>
    public static readonly string DaprdImage = Environment.GetEnvironmentVariable("POLICYGRID_DAPRD_IMAGE") is { Length: > 0 } image ? image : "daprio/daprd:1.16.0";

    private INetwork? network;
    private readonly List<IContainer> sidecars = [];
    private readonly List<AppProcess> apps = [];

    public IContainer Redis { get; private set; } = null!;
    public AppProcess Registry { get; private set; } = null!;
    public AppProcess Executor { get; private set; } = null!;
    public int RegistrySidecarHttpPort { get; private set; }

    /// <summary>The registry's API token (scope write): its public API is reachable beyond loopback here.</summary>
    public string RegistryToken { get; } = NewToken();

    // The executor's app API token: its daprd sends it, and the app refuses calls without it.
    private readonly string executorAppToken = NewToken();

    private static string NewToken() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    public async ValueTask InitializeAsync()
    {
        if (!ContainerEngine.Available) return;
        var ct = TestContext.Current.CancellationToken;
        network = new NetworkBuilder().WithName("policygrid-e2e-" + Guid.NewGuid().ToString("N")[..8]).Build();
        await network.CreateAsync(ct);
        Redis = new ContainerBuilder("redis:7-alpine")
            .WithNetwork(network).WithNetworkAliases("redis")
            .WithWaitStrategy(Wait.ForUnixContainer().UntilCommandIsCompleted("redis-cli", "ping"))
            .Build();
        await Redis.StartAsync(ct);

        var resources = ComponentsForContainers();
        var registryPort = LoopbackPorts.Free();
        var executorPort = LoopbackPorts.Free();
        var registrySidecar = await StartSidecarAsync(DaprNames.Apps.Registry, registryPort, resources, appToken: null, ct);
        var executorSidecar = await StartSidecarAsync(DaprNames.Apps.Executor, executorPort, resources, executorAppToken, ct);
        RegistrySidecarHttpPort = registrySidecar.GetMappedPublicPort(3500);

        Executor = await StartAppAsync("services/PolicyGrid.Executor", "PolicyGrid.Executor", executorPort, executorSidecar, new Dictionary<string, string>
        {
            ["APP_API_TOKEN"] = executorAppToken,
        }, ct);
        Registry = await StartAppAsync("services/PolicyGrid.Registry", "PolicyGrid.Registry", registryPort, registrySidecar, new Dictionary<string, string>
        {
            ["PolicyGrid__Auth__Tokens__0__Name"] = "e2e",
            ["PolicyGrid__Auth__Tokens__0__Token"] = RegistryToken,
            ["PolicyGrid__Auth__Tokens__0__Scopes__0"] = "write",
        }, ct);
    }

    private async Task<AppProcess> StartAppAsync(string dir, string assembly, int port, IContainer sidecar, Dictionary<string, string> credentials, CancellationToken ct)
    {
        var environment = new Dictionary<string, string>(credentials)
        {
            ["DAPR_HTTP_ENDPOINT"] = $"http://127.0.0.1:{sidecar.GetMappedPublicPort(3500)}",
            ["DAPR_GRPC_ENDPOINT"] = $"http://127.0.0.1:{sidecar.GetMappedPublicPort(50001)}",
            ["PolicyGrid__Dapr__DocumentQueries"] = "KeyIndex",
            // The sidecar calls from its container, through the host's bridge address: loopback would not reach the app.
            ["PolicyGrid__Dapr__BindAddress"] = "0.0.0.0",
        };
        var app = await AppProcess.StartAsync(dir, assembly, port, environment, ct);
        apps.Add(app);
        return app;
    }

    private async Task<IContainer> StartSidecarAsync(string appId, int appPort, string resources, string? appToken, CancellationToken ct)
    {
        var builder = new ContainerBuilder(DaprdImage);
        // daprd sends APP_API_TOKEN to its app as the header dapr-api-token on every call.
        if (appToken is not null) builder = builder.WithEnvironment("APP_API_TOKEN", appToken);
        var sidecar = builder
            .WithNetwork(network!).WithNetworkAliases(appId + "-dapr")
            .WithExtraHost("host.docker.internal", "host-gateway")
            .WithBindMount(resources, "/components")
            .WithPortBinding(3500, true).WithPortBinding(50001, true)
            .WithCommand("./daprd", "--app-id", appId, "--app-port", appPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--app-channel-address", "host.docker.internal", "--resources-path", "/components",
                "--dapr-http-port", "3500", "--dapr-grpc-port", "50001", "--log-level", "info")
            // Not "dapr initialized": daprd finishes initializing only once the app listens, and the app starts after it.
            .WithWaitStrategy(Wait.ForUnixContainer().UntilMessageIsLogged("HTTP server (is running on port|listening on TCP address)"))
            .Build();
        await sidecar.StartAsync(ct);
        sidecars.Add(sidecar);
        return sidecar;
    }

    /// <summary>This repository's components/, pointed at the Redis container instead of localhost.</summary>
    private static string ComponentsForContainers()
    {
        var dir = Path.Combine(Path.GetTempPath(), "policygrid-e2e-components-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        foreach (var file in Directory.GetFiles(Path.Combine(Repository.Root, "components"), "*.yaml"))
            File.WriteAllText(Path.Combine(dir, Path.GetFileName(file)), File.ReadAllText(file).Replace("localhost:6379", "redis:6379", StringComparison.Ordinal));
        return dir;
    }

    /// <summary>The entries of a Redis stream (pubsub.redis keeps one stream per topic), as redis-cli prints them.</summary>
    public async Task<string> StreamAsync(string topic, CancellationToken ct) =>
        (await Redis.ExecAsync(["redis-cli", "XRANGE", topic, "-", "+"], ct)).Stdout;

    public async ValueTask DisposeAsync()
    {
        foreach (var app in apps) await app.DisposeAsync();
        foreach (var sidecar in sidecars) await sidecar.DisposeAsync();
        if (Redis is not null) await Redis.DisposeAsync();
        if (network is not null) await network.DisposeAsync();
    }
}
