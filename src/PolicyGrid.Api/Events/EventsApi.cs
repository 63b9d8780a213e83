using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Auth;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Api.Events;

/// <summary>
/// The event flow without Dapr: <c>POST /events</c> takes an evaluation request as a CloudEvent
/// (structured or binary mode), runs it through the same <see cref="EvaluationEventHandler"/> as the
/// Dapr executor app, and answers the decision it published; <c>GET /events/decisions</c> reads the
/// decisions back from the in-process bus (long-polling with <c>wait</c>).
/// </summary>
public static class EventsApi
{
    public const int MaxWaitSeconds = 60;

    public static IServiceCollection AddEventsApi(this IServiceCollection services)
    {
        // A factory, so a composition that lacks an executor or a bus still builds; only /events then fails.
        services.AddSingleton(sp => ActivatorUtilities.CreateInstance<EvaluationEventHandler>(sp));
        return services;
    }

    public static IEndpointRouteBuilder MapEventsApi(this IEndpointRouteBuilder app)
    {
        var events = app.MapGroup("/events").WithTags("Events");
        events.MapPost("", PostEvent)
            .WithName("PostEvaluationEvent")
            .WithSummary("Evaluate a policy from a CloudEvent (structured or binary mode); the decision is published to policy-decisions")
            .Accepts<JsonObject>(CloudEventReader.StructuredMediaType, "application/json");
        events.MapGet("/decisions", GetDecisions)
            .WithName("GetDecisions")
            .WithSummary("Decisions published on the in-process bus, optionally for one correlation_id; wait=<seconds> long-polls for the first");
        return app;
    }

    public static async Task<Results<EnvelopeOk<JsonObject>, Failure>> PostEvent(
        HttpContext context, EvaluationEventHandler handler, IOptions<ApiLimits> limits, CancellationToken ct)
    {
        var body = await RequestBytes.ReadAsync(context, limits.Value.MaxBodyBytes, "event");
        var cloudEvent = CloudEventReader.Read(body, context.Request.ContentType, context.Request.Headers);
        // The token's name, as every other call records; an open server knows no more than the event's source.
        var outcome = await handler.HandleAsync(cloudEvent, ct, context.User.Identity is { IsAuthenticated: true } ? context.Caller() : null);
        return outcome.Disposition switch
        {
            EventDisposition.Success => Answer.Ok(new JsonObject
            {
                ["event_id"] = cloudEvent.Id,
                [EventTypes.CorrelationId] = outcome.CorrelationId,
                ["decision"] = outcome.Decision!.DeepClone(),
            }),
            // Malformed or transient: the caller hears why, as for any other call.
            _ => Failure.From(outcome.Problem!),
        };
    }

    public static async Task<EnvelopeOk<JsonArray>> GetDecisions(
        HttpContext context, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "correlation_id")] string? correlationId,
        [Microsoft.AspNetCore.Mvc.FromQuery(Name = "wait")] string? wait, CancellationToken ct)
    {
        var feed = context.RequestServices.GetService<IEventFeed>()
            ?? throw Problems.NotFound($"this server has no in-process event bus; decisions are published to the pub/sub topic {Topics.Decisions}");
        var seconds = 0d;
        if (!string.IsNullOrEmpty(wait) && (!double.TryParse(wait, NumberStyles.Float, CultureInfo.InvariantCulture, out seconds) || !(seconds >= 0 && seconds <= MaxWaitSeconds)))
            throw Problems.Validation("wait", $"must be a number of seconds from 0 to {MaxWaitSeconds}, not '{wait}'");
        var found = await feed.ReadAsync(Topics.Decisions, string.IsNullOrEmpty(correlationId) ? null : correlationId, TimeSpan.FromSeconds(seconds), ct);
        return Answer.Ok(new JsonArray(found.Select(e => (JsonNode)AsCloudEvent(e)).ToArray()));
    }

    /// <summary>A published event as structured-mode CloudEvent JSON, the shape a Dapr subscriber would see.</summary>
    public static JsonObject AsCloudEvent(PublishedEvent e) => new()
    {
        ["specversion"] = "1.0",
        ["id"] = e.Id,
        ["source"] = "policygrid",
        ["type"] = e.Type,
        ["time"] = e.Time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
        ["topic"] = e.Topic,
        ["datacontenttype"] = "application/json",
        ["data"] = e.Data.DeepClone(),
    };
}
