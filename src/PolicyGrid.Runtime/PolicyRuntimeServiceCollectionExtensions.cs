using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Polly;
using Polly.Telemetry;
using Polly.Timeout;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.Runtime.Transports;

namespace PolicyGrid.Runtime;

public static class PolicyRuntimeServiceCollectionExtensions
{
    /// <summary>
    /// Registers the policy runtime: the pre-started Python worker pool, Type 2 execution on it
    /// (<see cref="LocalPolicyExecutor"/>, also as <see cref="IPolicyExecutor"/> unless one is
    /// registered), dry loads for onboarding, the decision log with its retention, and the
    /// <c>inproc://</c> and <c>http(s)://</c> executor transports, and with the bundle cache its sweep
    /// (<see cref="BundleCachePruning"/>). Options come from
    /// <c>PolicyGrid:Runtime</c>. Needs an <see cref="IDocumentStore"/>, an <see cref="IContextStore"/>
    /// and an <see cref="IBundleStore"/>; policy code is resolved by the <see cref="BundleCache"/>
    /// (<c>AddBundleCache</c>) unless another <see cref="IPolicyBundleSource"/> is registered first.
    /// </summary>
    public static IServiceCollection AddPolicyRuntime(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<PolicyRuntimeOptions>().Bind(configuration.GetSection(PolicyRuntimeOptions.Section)).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PolicyRuntimeOptions>, PolicyRuntimeOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(sp => sp.GetRequiredService<IOptions<PolicyRuntimeOptions>>().Value);

        services.TryAddSingleton(sp => new PythonWorkerPool(sp.GetRequiredService<PolicyRuntimeOptions>().Pool, sp.GetRequiredService<ILogger<PythonWorkerPool>>(),
            sp.GetService<IPolicyBundleSource>()));
        services.AddHostedService<WorkerPoolStartup>();

        // The bundle cache (Runtime/Bundles) comes with the runtime unless the host brought its own source.
        if (!services.Any(d => d.ServiceType == typeof(IPolicyBundleSource))) services.AddBundleCache(configuration);
        if (services.Any(d => d.ServiceType == typeof(BundleCache)))
        {
            services.TryAddSingleton(sp => new BundleCachePruning(sp.GetRequiredService<BundleCache>(), sp.GetRequiredService<PythonWorkerPool>(),
                sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<BundleCachePruning>>()));
            services.AddHostedService(sp => sp.GetRequiredService<BundleCachePruning>());
        }
        services.TryAddSingleton<PolicyCatalog>();
        services.TryAddSingleton<PolicyTeardown>();
        services.AddHostedService<GonePolicySweep>();
        services.TryAddSingleton<KeyedLocks>();
        services.TryAddSingleton<ServerStop>();
        services.TryAddSingleton(sp => new DecisionLog(sp.GetRequiredService<IDocumentStore>(), sp.GetRequiredService<PolicyRuntimeOptions>().Decisions,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<DecisionLog>>(), sp.GetRequiredService<ServerStop>()));
        services.AddHostedService(sp => new DecisionRetention(sp.GetRequiredService<DecisionLog>(), sp.GetRequiredService<PolicyRuntimeOptions>().Decisions,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<DecisionRetention>>()));
        services.TryAddSingleton<LocalPolicyExecutor>();
        services.TryAddSingleton<IPolicyExecutor>(sp => sp.GetRequiredService<LocalPolicyExecutor>());
        services.TryAddSingleton<PolicyOnboarding>();

        services.AddSingleton<IExecutorTransport, InProcExecutorTransport>();
        services.AddSingleton<IExecutorTransport, HttpExecutorTransport>();
        services.AddHostedService<NodeTokenWarning>();
        AddExecutorNodeClient(services, configuration.GetSection(PolicyRuntimeOptions.Section).Get<PolicyRuntimeOptions>() ?? new());
        return services;
    }

    private static void AddExecutorNodeClient(IServiceCollection services, PolicyRuntimeOptions options)
    {
        // Every attempt may take as long as the longest policy deadline plus the network's share.
        var attempt = options.Execution.MaxTimeout + options.RemoteExecutors.Overhead;
        services.AddHttpClient(HttpExecutorTransport.ClientName, c => c.Timeout = Timeout.InfiniteTimeSpan)
            // The HTTP client's own log (four lines per call at Information, and the full stack trace of every failed
            // attempt while a node is down) is left out: ExecutorDispatch says in one line when a node goes down and
            // comes back, and each caller hears the failure in its answer.
            .RemoveAllLoggers()
            // A redirected POST comes back as a GET somewhere else: a node answers itself or the call is a 502 naming where it pointed.
            .ConfigurePrimaryHttpMessageHandler((handler, _) =>
            {
                if (handler is HttpClientHandler client) client.AllowAutoRedirect = false;
                else if (handler is SocketsHttpHandler sockets) sockets.AllowAutoRedirect = false;
            })
            .AddStandardResilienceHandler(o =>
            {
                o.AttemptTimeout.Timeout = attempt;
                o.TotalRequestTimeout.Timeout = attempt * (options.RemoteExecutors.ConnectRetries + 1) + TimeSpan.FromSeconds(5);
                // Executions are not idempotent, but every call carries a call id (RemoteExecutorClient) that the node
                // runs at most once (its NodeCallLedger, kept in memory: a node restarted in between runs the retry anew).
                // So a call is retried when it never reached the node, and also when its connection was closed or reset
                // after the request went out. Not retried: an attempt timeout (it is as long as the caller's whole wait,
                // so a retry would find no time left), and the node's 429/503 (answers the ledger does not keep, so a
                // retry would run anew: the node said it is overloaded or unavailable, and its Retry-After goes to the
                // caller instead of this server hammering it 100 ms later).
                o.Retry.MaxRetryAttempts = Math.Max(options.RemoteExecutors.ConnectRetries, 1);
                o.Retry.UseJitter = true;
                o.Retry.Delay = TimeSpan.FromMilliseconds(100);
                o.Retry.ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is HttpRequestException e
                    && (RemoteExecutorClient.NeverReached(e) || (RemoteExecutorClient.LostAfterSending(e) && CarriesCallId(args.Context))));
                o.Retry.OnRetry = args =>
                {
                    if (args.Outcome.Exception is HttpRequestException e)
                    {
                        // The caller's answer names it when this call's own failures open the circuit before its last attempt.
                        args.Context.Properties.Set(RemoteExecutorClient.LastAttemptFailure, e);
                        // Remembered for the caller's answer: a later "could not be reached" or open circuit does not mean it never ran.
                        if (!RemoteExecutorClient.NeverReached(e)) args.Context.Properties.Set(RemoteExecutorClient.LostAfterSendingOnce, true);
                    }
                    return default;
                };
                // A node whose policies time out is healthy; one that cannot be reached is not. One that answers what is not
                // HTTP answers at once, each call a 502 naming what it said, rather than an open circuit's "not answering".
                o.CircuitBreaker.ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is TimeoutRejectedException
                    || (args.Outcome.Exception is HttpRequestException e && !RemoteExecutorClient.AnsweredUnreadably(e)));
                o.CircuitBreaker.SamplingDuration = attempt * 2 + TimeSpan.FromSeconds(1);
                o.CircuitBreaker.MinimumThroughput = 3;
                o.CircuitBreaker.FailureRatio = 0.5;
                o.CircuitBreaker.BreakDuration = TimeSpan.FromSeconds(5);
            })
            .SelectPipelineByAuthority();
        // Polly logs every retry, attempt and circuit change of this pipeline with the exception's stack trace
        // (Warning and Error), per call while a node is down; the same reasoning as above. Other pipelines keep theirs.
        services.Configure<TelemetryOptions>(o =>
        {
            var previous = o.SeverityProvider;
            o.SeverityProvider = args => args.Source.PipelineName?.StartsWith(HttpExecutorTransport.ClientName, StringComparison.Ordinal) == true
                ? ResilienceEventSeverity.None
                : previous?.Invoke(args) ?? args.Event.Severity;
        });
    }

    private static bool CarriesCallId(ResilienceContext context) =>
        context.GetRequestMessage()?.Headers.Contains(NodeHeaders.CallId) == true;
}
