using System.ComponentModel;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Auth;
using PolicyGrid.Api.Documents;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Runtime;

namespace PolicyGrid.Api.Executors;

/// <summary>Executors (where Type 2 runs): CRUD, query, and execute_policy / management routed to the named executor.</summary>
public static class ExecutorsApi
{
    public const string BuiltInId = "local";
    public const string BuiltInHostUri = "inproc://local";

    public static IEndpointRouteBuilder MapExecutorsApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/executor").WithTags("Executors").AnswersErrors(400, 401, 403, 404, 409, 410, 413, 422, 429, 502, 503, 504);
        api.MapPost("", Create).WithName("CreateExecutor").WithSummary("Register an executor")
            .WithDescription("executor_host_uri picks the kind: inproc://local, http(s)://host:port (an executor node) or dapr://app-id.");
        api.MapPost("/query", Query).WithName("QueryExecutors").WithSummary("Find executors with a Mongo-style filter");
        api.MapQueryIsPostOnly("GET /executor/{executor_id}");
        api.MapGet("/{id}", Get).WithName("GetExecutor").WithSummary("Read an executor");
        api.MapPut("/{id}", Update).WithName("UpdateExecutor").WithSummary("Update an executor (Mongo-style update or replacement)");
        api.MapDelete("/{id}", Delete).WithName("DeleteExecutor").WithSummary("Remove an executor")
            .WithDescription("409 while jobs are pending or running on it, unless ?force=true, which cancels them first. Honours If-Match.");
        api.MapPost("/{id}/execute_policy", Execute).WithName("ExecutePolicy").WithSummary("Run a policy once on this executor (Type 2)")
            .WithDescription("Body: {policy_rule_uri, input_data, parameters?, settings?, context_key?, timeout_seconds?}. Answers exactly what the policy's eval returned. 410 for a retired policy; a Deprecation header for a deprecated one.");
        api.MapPost("/{id}/management", Manage).WithName("ManagePolicy").WithSummary("Run a management action on a fresh instance")
            .WithDescription("Body: {policy_rule_uri, action, data, parameters?, settings?}. Type 2 is stateless: meant for read-only and diagnostic actions.");
        return app;
    }

    public static async Task<Results<EnvelopeOk<JsonObject>, Failure>> Create(JsonBody body, [AsParameters] ExecutorServices services, CancellationToken ct)
    {
        var executor = PolicyExecutor.FromJson(body.RequireObject());
        if (await services.Store.GetAsync(Collections.Executors, executor.ExecutorId, ct) is not null)
            return Failure.From(Problems.Conflict($"executor '{executor.ExecutorId}' already exists; update it with PUT /executor/{executor.ExecutorId}"));
        var stored = await services.Store.CreateAsync(Collections.Executors, executor.ExecutorId, executor.ToJson(), ct);
        return Answer(services.Http, stored, [.. IgnoredFields.Warnings(body.RequireObject(), stored.Body, "an executor"),
            .. services.Dispatch.RegistrationWarnings(executor.ExecutorId, executor.ExecutorHostUri)]);
    }

    public static async Task<Results<EnvelopeOk<JsonObject>, Failure>> Get([Description("The executor_id")] string id, [AsParameters] ExecutorServices services, CancellationToken ct)
    {
        var stored = await services.Store.GetAsync(Collections.Executors, id, ct);
        return stored is null ? Failure.From(Missing(id)) : Answer(services.Http, stored);
    }

    public static async Task<Results<EnvelopeOk<JsonObject>, Failure>> Update(string id, JsonBody body, [AsParameters] ExecutorServices services, CancellationToken ct)
    {
        var update = body.RequireObject("update");
        var builtIn = IsBuiltIn(services.Http, id);
        var stored = await OptimisticUpdate.ApplyAsync(services.Store, Collections.Executors, id, ETags.IfMatch(services.Http.Request),
            current =>
            {
                if (builtIn) RefuseMovingBuiltIn(id, current.Body, update);
                var kept = PolicyExecutor.FromJson(UpdateEngine.Apply(current.Body, update, PolicyExecutor.IdentityFields)).ToJson();
                UpdateEngine.EnsureFieldsKept(update, kept);
                return kept;
            },
            () => Missing(id), (asked, now) => RevisionMismatch(id, asked, now), ct);
        services.Dispatch.Forget(id);
        var hostUri = stored.Body["executor_host_uri"]?.GetValue<string>() ?? "";
        return Answer(services.Http, stored, [.. IgnoredFields.Warnings(update, stored.Body, "an executor"),
            .. services.Dispatch.RegistrationWarnings(id, hostUri)]);
    }

    /// <summary>Whether the composition registers executor <paramref name="id"/> itself (see <see cref="BuiltInExecutorId"/>).</summary>
    private static bool IsBuiltIn(HttpContext http, string id) =>
        http.RequestServices.GetServices<BuiltInExecutorId>().Any(b => b.Id == id);

    /// <summary>
    /// A built-in executor is this server's own worker pool (or, on Dapr, the executor app): pointed anywhere else (or
    /// renamed), every Type 2 call on it would fail. Its labels, metadata and status may still change.
    /// </summary>
    private static void RefuseMovingBuiltIn(string id, JsonObject current, JsonObject update)
    {
        // Applied without identity protection, to see what the caller asked for; a replacement that leaves a field out keeps it.
        var asked = UpdateEngine.Apply(current, update, new HashSet<string>());
        var replacement = !update.Any(p => p.Key.StartsWith('$'));
        foreach (var field in new[] { "executor_id", "executor_host_uri" })
        {
            var after = asked[field];
            if (replacement && (after is null || after.GetValueKind() == System.Text.Json.JsonValueKind.Null)) continue;
            if (!JsonValues.DeepEquals(current[field], after))
                throw Problems.Conflict($"'{id}' is the built-in executor of this server: its {field} stays {current[field]?.ToJsonString() ?? "null"}; " +
                    "register another executor for another address, or set this one's executor_status to \"draining\" to stop using it");
        }
    }

    public static async Task<Results<EnvelopeOk<JsonObject>, Failure>> Delete(string id, [Description("true: cancel the executor's open jobs and delete it")] string? force, [AsParameters] ExecutorServices services, CancellationToken ct)
    {
        if (IsBuiltIn(services.Http, id))
            return Failure.From(Problems.Conflict($"'{id}' is the built-in executor of this server and comes back at every start; set its executor_status to \"draining\" to stop using it"));
        var forced = QueryFlag.Parse(services.Http.Request.Query, nameof(force));
        var ifMatch = ETags.IfMatch(services.Http.Request);
        var current = await services.Store.GetAsync(Collections.Executors, id, ct);
        if (current is null) return Failure.From(Missing(id));
        if (ifMatch is not null && !ifMatch.Matches(current.Revision))
            return Failure.From(RevisionMismatch(id, ifMatch, current.Revision));
        // A job's launcher is found through its executor: once the executor is gone a cancel cannot stop the job's process
        // or Kubernetes Job, which ran on, and a restart recorded the job failed while it ran.
        if (!forced && await services.Jobs.OpenJobsOnAsync(id, ct) is { Count: > 0 } open)
            return Failure.From(Problems.Conflict($"executor '{id}' still runs {open.Count} open job(s) ({Listed(open)}); cancel them "
                + $"(DELETE /jobs/{{job_id}}) or wait for them to end, or delete with ?force=true to cancel them with it"));
        var deleted = await services.Store.DeleteAsync(Collections.Executors, id, current.Revision, ct);
        services.Dispatch.Forget(id);
        if (deleted is null) return Failure.From(Missing(id));
        // Forced, its open jobs are stopped with it; unforced, any found here were submitted while it was being deleted.
        var cancelled = await services.Jobs.CancelOpenJobsAsync(PolicyExecutor.FromStored(deleted.Body),
            $"cancelled: its executor '{id}' was deleted", services.Http.Caller(), ct);
        return Envelope.Answer.Ok(deleted.Body, cancelled.Count == 0 ? []
            : [$"{cancelled.Count} open job(s) on executor '{id}' were cancelled with it ({Listed(cancelled)})"]);
    }

    // The first few ids of a list that may be long, and how many more.
    private static string Listed(IReadOnlyList<string> ids) => ShortList.Of(ids, 5);

    public static async Task<EnvelopeOk<JsonArray>> Query(JsonBody body, QueryWindow window, [AsParameters] ExecutorServices services, CancellationToken ct)
    {
        var filter = FilterParser.Parse(body.Node);
        var found = await services.Store.QueryAsync(Collections.Executors, window.Over(filter), ct);
        return Envelope.Answer.Ok(new JsonArray([.. found.Select(d => (JsonNode)d.Body)]));
    }

    public static async Task<EnvelopeOk<JsonObject>> Execute(string id, JsonBody body, [AsParameters] ExecutorServices services, CancellationToken ct)
    {
        const string kind = "an execute_policy request";
        var fields = body.RequireObject();
        var result = await IgnoredFields.ExplainingRefusals(fields, ExecutionBodies.ExecutionFields, kind, () =>
            services.Dispatch.ExecuteAsync(id, ExecutionBodies.Execution(fields, TimeoutLimit.Of(services.Runtime.Value)), services.Http.Caller(), ct));
        return PolicyAnswer(services.Http, result, IgnoredFields.Warnings(fields, ExecutionBodies.ExecutionFields, kind, fate: "was ignored"));
    }

    public static async Task<EnvelopeOk<JsonObject>> Manage(string id, JsonBody body, [AsParameters] ExecutorServices services, CancellationToken ct)
    {
        const string kind = "a management request";
        var fields = body.RequireObject();
        var result = await IgnoredFields.ExplainingRefusals(fields, ExecutionBodies.ManagementFields, kind, () =>
            services.Dispatch.ManageAsync(id, ExecutionBodies.Management(fields, TimeoutLimit.Of(services.Runtime.Value)), services.Http.Caller(), ct));
        return PolicyAnswer(services.Http, result, IgnoredFields.Warnings(fields, ExecutionBodies.ManagementFields, kind, fate: "was ignored"));
    }

    /// <summary>Exactly what the policy returned, plus a Deprecation header when its policy is deprecated.</summary>
    public static EnvelopeOk<JsonObject> PolicyAnswer(HttpContext http, PolicyResult result, IReadOnlyList<string>? warnings = null)
    {
        if (result.Deprecated) http.Response.Headers["Deprecation"] = "true";
        if (result.Warnings.Count > 0) warnings = [.. (warnings ?? []).Concat(result.Warnings).Distinct(StringComparer.Ordinal)];
        return Envelope.Answer.Ok(result.Output, warnings ?? []);
    }

    private static EnvelopeOk<JsonObject> Answer(HttpContext http, StoredDocument stored, IReadOnlyList<string>? warnings = null)
    {
        ETags.Set(http.Response, stored.Revision);
        return Envelope.Answer.Ok(stored.Body, warnings ?? []);
    }

    private static PolicyGridException Missing(string id) => Problems.NotFound($"no executor '{id}' is registered");

    private static PolicyGridException RevisionMismatch(string id, IfMatchCondition asked, string current) => asked.Mismatch($"executor '{id}'", current);
}

/// <summary>What Executors endpoints need, bound by ASP.NET in one bundle.</summary>
public sealed record ExecutorServices(HttpContext Http, IDocumentStore Store, ExecutorDispatch Dispatch, IOptions<PolicyRuntimeOptions> Runtime, Jobs.JobBoard Jobs);
