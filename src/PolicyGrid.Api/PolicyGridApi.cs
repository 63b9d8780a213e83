using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Auth;
using PolicyGrid.Api.Bundles;
using PolicyGrid.Api.Decisions;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Api.Executors;
using PolicyGrid.Api.Events;
using PolicyGrid.Api.Functions;
using PolicyGrid.Api.Graphs;
using PolicyGrid.Api.Health;
using PolicyGrid.Api.Jobs;
using PolicyGrid.Api.Node;
using PolicyGrid.Api.Policies;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Scalar.AspNetCore;

namespace PolicyGrid.Api;

/// <summary>
/// Composes the HTTP surface. Each area is one <c>XxxApi</c> class with its own <c>MapXxxApi</c>;
/// a new area adds its file and one line in <see cref="MapPolicyGridApi"/>.
/// </summary>
public static class PolicyGridApi
{
    public static IServiceCollection AddPolicyGridApi(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<ApiLimits>().Bind(configuration.GetSection(ApiLimits.Section)).ValidateOnStart();
        services.TryAddSingleton<PolicyGrid.Runtime.Execution.ServerStop>();
        services.TryAddSingleton<StopGrace>();
        services.AddSingleton<IValidateOptions<ApiLimits>, ApiLimitsValidator>();
        // Kestrel refuses an oversized request head itself, bodiless, before any middleware: its limits go above ours
        // (RequestHeadLimitsMiddleware answers ours in the envelope). Here rather than in the host builder, so every app
        // that serves this API (serve, the Dapr registry and executor) has both, and no other app has only one.
        services.AddSingleton<IConfigureOptions<KestrelServerOptions>, KestrelRequestHeadLimits>();
        services.AddOptions<ApiAuthOptions>().Bind(configuration.GetSection(ApiAuthOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<ApiAuthOptions>, ApiAuthOptionsValidator>();
        // A parameter the framework cannot bind throws (answered 400 by ErrorEnvelopeMiddleware with the framework's message,
        // which names the parameter) in every environment; otherwise only Development does, and Production answers a bare 400.
        services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<ExecutorOutages>();
        services.AddSingleton<ExecutorDispatch>();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<NodeCallLedger>();
        services.AddSingleton<PolicyCodeCheck>();
        services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
            o.SerializerOptions.DictionaryKeyPolicy = null;
            // Bodies and stored documents nest at most DocumentDepth.Max deep; answers wrap them in envelopes.
            o.SerializerOptions.MaxDepth = PolicyGrid.Core.Documents.DocumentDepth.MaxWritten;
        });
        services.AddOpenApi(o => o.AddDocumentTransformer((doc, _, _) =>
        {
            doc.Info.Title = "PolicyGrid API";
            doc.Info.Description = "Register, discover and run versioned policies. Every JSON answer is an envelope: {\"success\": true, \"data\": ...} or {\"success\": false, \"message\", \"code\"}.";
            return Task.CompletedTask;
        }));
        services.AddEventsApi();
        services.AddFunctionsApi();
        services.AddGraphsApi(configuration);
        services.AddJobsApi(configuration);
        return services;
    }

    public static WebApplication MapPolicyGridApi(this WebApplication app)
    {
        // Order matters: errors wrap everything; routing runs before the token check so it knows the endpoint.
        app.UseMiddleware<ErrorEnvelopeMiddleware>();
        app.UseMiddleware<RequestHeadLimitsMiddleware>();
        app.UseStatusCodePages(StatusCodeEnvelopes.WriteAsync);
        app.UseMiddleware<HeadAsGetMiddleware>();
        app.UseMiddleware<WorkerCallerGuard>();
        app.UseRouting();
        app.UseMiddleware<ApiTokenMiddleware>();

        app.MapOpenApi().AllowAnonymous();
        app.MapScalarApiReference("/docs", o => o.WithTitle("PolicyGrid API").WithOpenApiRoutePattern("/openapi/{documentName}.json")).AllowAnonymous();
        app.MapHealthApi();
        app.MapPoliciesApi();
        app.MapExecutorsApi();
        app.MapBundlesApi();
        app.MapDecisionsApi();
        app.MapNodeApi();
        app.MapEventsApi();
        app.MapFunctionsApi();
        app.MapGraphsApi();
        app.MapJobsApi();
        return app;
    }
}
