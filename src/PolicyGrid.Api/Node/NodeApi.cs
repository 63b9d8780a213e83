using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Auth;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Api.Executors;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Transports;

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

    public static Task<EnvelopeOk<JsonObject>> Execute(JsonBody body, [AsParameters] NodeServices services, CancellationToken ct)
    {
        var given = body.RequireObject();
        var request = ExecutionBodies.Execution(given, TimeoutLimit.Of(services.Runtime.Value)) with { Budget = Budget(services.Http) };
        return OnceAsync(services, "execute_policy", given, (executor, caller, run) => executor.ExecuteAsync(request, caller, run), ct);
    }

    public static Task<EnvelopeOk<JsonObject>> Manage(JsonBody body, [AsParameters] NodeServices services, CancellationToken ct)
    {
        var given = body.RequireObject();
        // A management action runs on a fresh instance, but may still wait for a policy worker: past the budget it is not started.
        var request = ExecutionBodies.Management(given, TimeoutLimit.Of(services.Runtime.Value)) with { Budget = Budget(services.Http) };
        return OnceAsync(services, "management", given, (executor, caller, run) => executor.ManageAsync(request, caller, run), ct);
    }

    // Runs a checked node call on this server's own executor, at most once per call id (NodeCallLedger).
    private static async Task<EnvelopeOk<JsonObject>> OnceAsync(NodeServices services, string route, JsonObject given,
        Func<IPolicyExecutor, CallerIdentity, CancellationToken, Task<PolicyResult>> call, CancellationToken ct)
    {
        var executor = services.Dispatch.ExecutorFor(ExecutorsApi.BuiltInId, ExecutorsApi.BuiltInHostUri);
        var caller = services.Http.Caller();
        return ExecutorsApi.PolicyAnswer(services.Http, await services.Ledger.RunOnceAsync(CallId(services.Http), route, caller,
            CanonicalJson.Sha256(given), run => call(executor, caller, run), ct));
    }

    // The caller's id for this call, which retries of it repeat (NodeCallLedger); null when it sent none.
    internal static string? CallId(HttpContext http) =>
        http.Request.Headers.TryGetValue(NodeCallLedger.Header, out var id) ? NodeCallLedger.Checked(id.ToString()) : null;

    /// <summary>
    /// How long the caller waits, from <see cref="NodeHeaders.TimeoutMs"/> (whole milliseconds, counted from now); null
    /// when it sent none. A 400 naming the header when it is not a number of milliseconds from 1 to 30 days.
    /// </summary>
    internal static CallBudget? Budget(HttpContext http)
    {
        if (!http.Request.Headers.TryGetValue(NodeHeaders.TimeoutMs, out var given)) return null;
        var text = given.ToString();
        if (text.Length is 0 or > 12 || !text.All(char.IsAsciiDigit) || long.Parse(text, CultureInfo.InvariantCulture) is < 1 or > NodeHeaders.MaxTimeoutMs)
            throw Problems.Validation(NodeHeaders.TimeoutMs, $"must be a whole number of milliseconds from 1 to {NodeHeaders.MaxTimeoutMs} (how long the caller waits for the answer)");
        return new CallBudget(TimeSpan.FromMilliseconds(long.Parse(text, CultureInfo.InvariantCulture)), $"{NodeHeaders.TimeoutMs}: {text}");
    }
}

public sealed record NodeServices(HttpContext Http, ExecutorDispatch Dispatch, IOptions<PolicyRuntimeOptions> Runtime, NodeCallLedger Ledger);
