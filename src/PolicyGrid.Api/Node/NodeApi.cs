using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Auth;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Api.Executors;
using PolicyGrid.Runtime;

namespace PolicyGrid.Api.Node;

/// <summary>
/// The executor node API: what a registry forwards to when this server is another one's
/// <c>http(s)://</c> executor. Runs on this server's own built-in executor.
/// </summary>
public static class NodeApi
{
    public static IEndpointRouteBuilder MapNodeApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("").WithTags("Executor node").AnswersErrors(400, 401, 403, 404, 410, 413, 422, 429, 503, 504);
        api.MapPost("/execute_policy", Execute).WithName("NodeExecutePolicy").WithSummary("Executor node: run a policy once on this server")
            .WithDescription("The body of POST /executor/{id}/execute_policy; lets this server be another registry's executor.");
        api.MapPost("/management", Manage).WithName("NodeManagePolicy").WithSummary("Executor node: run a management action on a fresh instance");
        return app;
    }

    public static async Task<EnvelopeOk<JsonObject>> Execute(JsonBody body, [AsParameters] NodeServices services, CancellationToken ct)
    {
        var request = ExecutionBodies.Execution(body.RequireObject(), TimeoutLimit.Of(services.Runtime.Value));
        var executor = services.Dispatch.ExecutorFor(ExecutorsApi.BuiltInId, ExecutorsApi.BuiltInHostUri);
        return ExecutorsApi.PolicyAnswer(services.Http, await executor.ExecuteAsync(request, services.Http.Caller(), ct));
    }

    public static async Task<EnvelopeOk<JsonObject>> Manage(JsonBody body, [AsParameters] NodeServices services, CancellationToken ct)
    {
        var request = ExecutionBodies.Management(body.RequireObject(), TimeoutLimit.Of(services.Runtime.Value));
        var executor = services.Dispatch.ExecutorFor(ExecutorsApi.BuiltInId, ExecutorsApi.BuiltInHostUri);
        return ExecutorsApi.PolicyAnswer(services.Http, await executor.ManageAsync(request, services.Http.Caller(), ct));
    }
}

public sealed record NodeServices(HttpContext Http, ExecutorDispatch Dispatch, IOptions<PolicyRuntimeOptions> Runtime);
