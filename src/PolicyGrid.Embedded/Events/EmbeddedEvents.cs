using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Embedded.Events;

public static class EmbeddedEvents
{
    /// <summary>The in-process event bus, as both the publisher port and the feed <c>GET /events/decisions</c> reads.</summary>
    public static IServiceCollection AddEmbeddedEvents(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<InProcessEventBus>();
        services.Replace(ServiceDescriptor.Singleton<IEventBus>(sp => sp.GetRequiredService<InProcessEventBus>()));
        services.Replace(ServiceDescriptor.Singleton<IEventFeed>(sp => sp.GetRequiredService<InProcessEventBus>()));
        return services;
    }
}
