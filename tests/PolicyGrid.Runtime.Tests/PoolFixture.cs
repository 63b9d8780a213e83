using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Runtime.Tests;

/// <summary>One pre-started pool shared by the worker tests: worker start is paid once.</summary>
public sealed class PoolFixture : IAsyncLifetime
{
    public CapturingLoggerProvider Logs { get; } = new();
    public PythonWorkerPool Pool { get; private set; } = null!;

    public static WorkerPoolOptions TestOptions(int workers = 2) => new()
    {
        Workers = workers,
        MemoryLimitBytes = 512L << 20,
        WorkDirectory = Path.Combine(TestBundles.Root, "workers-" + Guid.NewGuid().ToString("N")[..8]),
    };

    /// <summary>A pool of <see cref="TestOptions"/> (changed by <paramref name="configure"/>) that logs nowhere.</summary>
    public static PythonWorkerPool NewPool(int workers = 2, Action<WorkerPoolOptions>? configure = null)
    {
        var options = TestOptions(workers);
        configure?.Invoke(options);
        return new PythonWorkerPool(options, new CapturingLoggerProvider().CreateLogger<PythonWorkerPool>());
    }

    /// <summary>eval of policy <paramref name="uri"/> (from <paramref name="bundle"/>) on instance <paramref name="key"/> (default: the uri); answers its result.</summary>
    public static async Task<JsonObject> EvalAsync(PythonWorkerPool pool, string uri, BundleDirectory bundle, JsonObject? input = null,
        string? key = null, JsonObject? settings = null, double deadlineSeconds = 5) =>
        (await pool.InvokeAsync(new PolicyInvocation(key ?? uri, new PolicyLoadSpec(uri, bundle, settings ?? [], []), PolicyMethods.Eval,
            new JsonObject { ["parameters"] = new JsonObject(), ["input_data"] = input ?? [], ["context"] = new JsonObject() },
            TimeSpan.FromSeconds(deadlineSeconds)), TestContext.Current.CancellationToken))!["result"]!.AsObject();

    public async ValueTask InitializeAsync()
    {
        // A secret in the server's environment that no policy may see.
        Environment.SetEnvironmentVariable("SECRET_TOKEN", "s3cr3t-from-the-server");
        Pool = new PythonWorkerPool(TestOptions(), Logs.CreateLogger<PythonWorkerPool>());
        await Pool.StartAsync();
    }

    public async ValueTask DisposeAsync() => await Pool.DisposeAsync();
}

/// <summary>Keeps every log line so tests can check what reached the server log.</summary>
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<(LogLevel Level, string Message)> Entries { get; } = new();

    public ILogger<T> CreateLogger<T>() => new Logger<T>(new SingleProviderFactory(this));
    public ILogger CreateLogger(string categoryName) => new CapturingLogger(this);
    public void Dispose() { }

    private sealed class SingleProviderFactory(CapturingLoggerProvider provider) : ILoggerFactory
    {
        public void AddProvider(ILoggerProvider p) { }
        public ILogger CreateLogger(string categoryName) => provider.CreateLogger(categoryName);
        public void Dispose() { }
    }

    private sealed class CapturingLogger(CapturingLoggerProvider provider) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => provider.Entries.Enqueue((logLevel, formatter(state, exception)));
    }
}
