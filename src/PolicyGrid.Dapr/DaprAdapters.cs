using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Bundles;
using PolicyGrid.Dapr.Context;
using PolicyGrid.Dapr.Documents;
using PolicyGrid.Dapr.Events;
using PolicyGrid.Dapr.Invocation;

namespace PolicyGrid.Dapr;

public static class DaprAdapters
{
    /// <summary>
    /// The Dapr shape's adapters of the Core ports: documents in a state store, context in the Redis
    /// cache store, bundles through a bucket binding, events over pub/sub and <c>dapr://</c> executors
    /// over service invocation. They replace whatever another shape registered for the same ports,
    /// so the order of Add calls in a Program.cs does not matter.
    /// </summary>
    public static IServiceCollection AddDaprAdapters(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<DaprOptions>().Bind(configuration.GetSection(DaprOptions.Section));
        // Bundles (up to Limits:MaxBundleBytes, 64 MiB) come back from the bucket binding in one gRPC message, and the
        // SDK's channel takes at most 4 MB by default (Grpc.Net.Client; dotnet-sdk DaprClientBuilder sets no size): every
        // bundle over 4 MB could be stored but never read back. The sidecar bounds what it sends (dapr.io/max-body-size).
        services.AddDaprClient(dapr => dapr.UseGrpcChannelOptions(new global::Grpc.Net.Client.GrpcChannelOptions
        {
            ThrowOperationCanceledOnCancellation = true, // as the SDK's own default options
            MaxReceiveMessageSize = null,
        }));
        services.Replace(ServiceDescriptor.Singleton<IDocumentStore, DaprStateDocumentStore>());
        services.Replace(ServiceDescriptor.Singleton<IContextStore, DaprContextStore>());
        services.Replace(ServiceDescriptor.Singleton<IBundleStore, DaprBindingBundleStore>());
        services.Replace(ServiceDescriptor.Singleton<IEventBus, DaprEventBus>());
        services.AddHttpClient(DaprExecutorTransport.HttpClientName, (provider, client) =>
        {
            // The sidecar's HTTP endpoint (DAPR_HTTP_ENDPOINT, or http://127.0.0.1:DAPR_HTTP_PORT) and its API token, when set.
            var config = provider.GetRequiredService<IConfiguration>();
            client.BaseAddress = new Uri(global::Dapr.DaprDefaults.GetDefaultHttpEndpoint(config).TrimEnd('/') + "/");
            // No client-wide timeout: each caller bounds its own call by what it waits for. A Type 2 call by the longest
            // policy deadline plus the network's share (DaprInvokedExecutor), a graph run by its deadline (DaprGraphRunner,
            // up to an hour): a fixed 5 minutes cut the longer ones off with a TaskCanceledException, a 500.
            client.Timeout = Timeout.InfiniteTimeSpan;
            var token = global::Dapr.DaprDefaults.GetDefaultDaprApiToken(config);
            if (!string.IsNullOrEmpty(token)) client.DefaultRequestHeaders.Add("dapr-api-token", token);
        });
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IExecutorTransport, DaprExecutorTransport>());
        if (configuration.GetSection(DaprOptions.Section).GetValue<bool>(nameof(DaprOptions.RegisterDaprExecutor)))
        {
            // The registry registers executor 'dapr' itself, so the API keeps it from being repointed, renamed or deleted.
            services.AddHostedService<DaprExecutorRegistration>();
            services.AddSingleton(new PolicyGrid.Core.Ports.BuiltInExecutorId(DaprNames.ExecutorId));
        }
        return services;
    }
}
