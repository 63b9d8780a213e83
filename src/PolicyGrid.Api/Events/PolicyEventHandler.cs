using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Events;

/// <summary>
/// Takes a policy event (<see cref="Core.Ports.Topics.PolicyEvents"/>: <c>{"policy_rule_uri", "change"}</c>, published by
/// the registry when a policy is deleted or retired) in an app that runs policies but does not hold the registry: it
/// gives back what this app held for the policy (<see cref="PolicyTeardown.TearDownIfGoneAsync"/>, which asks the store
/// first, so a late or foreign event changes nothing). Answers Dapr's delivery status: SUCCESS, DROP for an event that
/// can never be handled, RETRY when the store could not be read.
/// </summary>
public static class PolicyEventHandler
{
    public const string Success = "SUCCESS";
    public const string Retry = "RETRY";
    public const string Drop = "DROP";

    public static async Task<string> HandleAsync(HttpContext context, PolicyTeardown teardown, ILogger log, CancellationToken ct)
    {
        string uri;
        try
        {
            var body = await RequestBytes.ReadAsync(context, 64 * 1024, "event");
            var data = EvaluationEvent.DataObject(CloudEventReader.Read(body, context.Request.ContentType, context.Request.Headers));
            uri = data["policy_rule_uri"] is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0
                ? s
                : throw Problems.BadRequest("policy event data has no policy_rule_uri");
        }
        catch (PolicyGridException e)
        {
            log.LogWarning("policy event dropped: {Reason}", e.Message);
            return Drop;
        }
        try
        {
            if (await teardown.TearDownIfGoneAsync(uri, ct))
                log.LogDebug("policy {PolicyRuleUri} is gone: its workers and parsed document were given back", uri);
            return Success;
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            log.LogWarning(e, "policy event for {PolicyRuleUri} could not be handled; asking the sidecar to retry", uri);
            return Retry;
        }
    }
}
