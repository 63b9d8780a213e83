using System.Text.Json.Nodes;
using PolicyGrid.Api.Events;
using PolicyGrid.Dapr;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Functions;

/// <summary>
/// The functions app's pub/sub side: it subscribes to <see cref="DaprNames.Topics.PolicyEvents"/> so a deleted or retired
/// policy's workers and parsed document in this app are given back (<see cref="PolicyEventHandler"/>). As on the executor
/// app, without an app API token only the sidecar's loopback may call these routes.
/// </summary>
public static class PolicyEventSubscription
{
    public static JsonArray Subscriptions() => [DaprNames.PolicyEventsSubscription()];

    public static IEndpointRouteBuilder MapPolicyEventSubscription(this IEndpointRouteBuilder app)
    {
        var sidecarOnly = DaprAppToken.SidecarOnly(app.ServiceProvider);
        app.MapGet("/dapr/subscribe", () => Results.Json(Subscriptions()))
            .ExcludeFromDescription().AllowAnonymous().AddEndpointFilter(sidecarOnly);
        app.MapPost(DaprNames.PolicyEventsRoute, async (HttpContext context, PolicyTeardown teardown, ILoggerFactory logs, CancellationToken ct) =>
                Results.Json(new JsonObject { ["status"] = await PolicyEventHandler.HandleAsync(context, teardown, logs.CreateLogger(typeof(PolicyEventSubscription)), ct) }))
            .ExcludeFromDescription().AllowAnonymous().AddEndpointFilter(sidecarOnly);
        return app;
    }
}
