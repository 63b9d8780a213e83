using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Policies;

/// <summary>
/// After a policy was deleted or retired: the policy runtime in this process (serve, the Dapr registry's dry loads)
/// gives back its parsed document and its workers (<see cref="PolicyTeardown"/>). The write is done already, so a
/// failure here is logged, not answered: the workers then go when idle or when another policy needs the room.
/// </summary>
internal static class PolicyGone
{
    public static async Task TearDownAsync(PolicyServices services, string id)
    {
        if (services.Http.RequestServices.GetService<PolicyTeardown>() is not { } teardown) return;
        try
        {
            await teardown.TearDownAsync(id, CancellationToken.None);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            services.Logs.CreateLogger(typeof(PoliciesApi).FullName!).LogWarning(e,
                "policy {PolicyRuleUri} was deleted or retired, but its workers could not be stopped; they stay until idle", id);
        }
    }
}
