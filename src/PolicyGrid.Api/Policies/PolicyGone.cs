using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Policies;

/// <summary>
/// After a policy was deleted or retired: the policy runtime in this process (serve, the Dapr registry's dry loads)
/// gives back its parsed document and its workers (<see cref="PolicyTeardown"/>). The write is done already, so a
/// failure here is logged, not answered: the workers then go when idle or when another policy needs the room.
/// </summary>
internal static class PolicyGone
{
    /// <param name="change">"deleted" or "retired", as the event on <see cref="Topics.PolicyEvents"/> says it.</param>
    public static async Task TearDownAsync(PolicyServices services, string id, string change)
    {
        var log = services.Logs.CreateLogger(typeof(PoliciesApi).FullName!);
        if (services.Http.RequestServices.GetService<PolicyTeardown>() is { } teardown)
        {
            try
            {
                await teardown.TearDownAsync(id, CancellationToken.None);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                log.LogWarning(e, "policy {PolicyRuleUri} was {Change}, but its workers could not be stopped; they stay until idle", id, change);
            }
        }
        // Where policies run in other apps (the Dapr shape), they hear it from the event.
        if (services.Http.RequestServices.GetService<IEventBus>() is { } bus)
        {
            try
            {
                await bus.PublishAsync(Topics.PolicyEvents, new JsonObject { ["policy_rule_uri"] = id, ["change"] = change }, CancellationToken.None);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                log.LogWarning(e, "policy {PolicyRuleUri} was {Change}, but the event saying so could not be published on {Topic}; "
                    + "the apps that ran it stop its workers when idle", id, change, Topics.PolicyEvents);
            }
        }
    }
}
