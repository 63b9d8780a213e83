using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Runtime.Bundles;

public static class BundleCacheRegistration
{
    /// <summary>
    /// Registers <see cref="BundleCache"/> as the <see cref="IPolicyBundleSource"/> (options from
    /// <c>PolicyGrid:Runtime:Bundles</c>) with its HTTP client: no proxy, every connection through the
    /// <see cref="BundleNetworkGuard"/>, at most 5 redirects, and a resilience pipeline (attempt timeout,
    /// jittered retries of transient failures, circuit breaker per host). Needs an <see cref="IBundleStore"/>.
    /// </summary>
    public static IServiceCollection AddBundleCache(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var options = configuration.GetSection(BundleCacheOptions.Section).Get<BundleCacheOptions>() ?? new BundleCacheOptions();
        return services.AddBundleCache(options);
    }

    /// <summary>As <see cref="AddBundleCache(IServiceCollection, IConfiguration)"/>, with options given directly.</summary>
    public static IServiceCollection AddBundleCache(this IServiceCollection services, BundleCacheOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(options);
        services.TryAddSingleton(sp => new BundleNetworkGuard(sp.GetRequiredService<BundleCacheOptions>()));
        services.TryAddSingleton(sp => new BundleCache(sp.GetRequiredService<IBundleStore>(), sp.GetRequiredService<IHttpClientFactory>(),
            sp.GetRequiredService<BundleCacheOptions>(), sp.GetService<ILogger<BundleCache>>()));
        services.TryAddSingleton<IPolicyBundleSource>(sp => sp.GetRequiredService<BundleCache>());

        services.AddHttpClient(BundleCache.HttpClientName, c => c.Timeout = Timeout.InfiniteTimeSpan)
            .ConfigurePrimaryHttpMessageHandler(sp => new SocketsHttpHandler
            {
                UseProxy = false,
                AllowAutoRedirect = true,
                MaxAutomaticRedirections = 5,
                ConnectCallback = sp.GetRequiredService<BundleNetworkGuard>().ConnectAsync,
                PooledConnectionLifetime = TimeSpan.FromMinutes(2),
            })
            .AddStandardResilienceHandler(o =>
            {
                o.AttemptTimeout.Timeout = options.DownloadTimeout;
                o.TotalRequestTimeout.Timeout = options.DownloadTimeout * (options.DownloadRetries + 1) + TimeSpan.FromSeconds(5);
                o.Retry.MaxRetryAttempts = Math.Max(options.DownloadRetries, 1);
                o.Retry.UseJitter = true;
                o.Retry.Delay = TimeSpan.FromMilliseconds(200);
                var transient = o.Retry.ShouldHandle;
                // A refused target stays refused: retrying it only repeats the refusal.
                o.Retry.ShouldHandle = args => args.Outcome.Exception is { } e && IsRefusal(e) ? ValueTask.FromResult(false) : transient(args);
                o.CircuitBreaker.SamplingDuration = options.DownloadTimeout * 2 + TimeSpan.FromSeconds(1);
                var breaks = o.CircuitBreaker.ShouldHandle;
                o.CircuitBreaker.ShouldHandle = args => args.Outcome.Exception is { } e && IsRefusal(e) ? ValueTask.FromResult(false) : breaks(args);
            })
            .SelectPipelineByAuthority();
        return services;
    }

    private static bool IsRefusal(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x is BundleUrlRefusedException) return true;
        return false;
    }
}
