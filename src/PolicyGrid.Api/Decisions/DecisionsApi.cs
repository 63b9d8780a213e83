using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using PolicyGrid.Api.Documents;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Decisions;

/// <summary>The decision log (audit trail of every execution: Type 2, local Type 3 jobs, Type 4 calls and Type 5 node runs), queried like any collection; newest first unless ?sort says otherwise.</summary>
public static class DecisionsApi
{
    public static IEndpointRouteBuilder MapDecisionsApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/decisions/query", Query).WithTags("Decisions").AnswersErrors(400, 401, 403, 413).WithName("QueryDecisions")
            .WithSummary("Find recorded executions with a Mongo-style filter")
            .WithDescription("Each decision: decision_id, kind, policy_rule_uri, bundle_sha256, caller, context_key, input_sha256, outcome, error_code, status, duration_ms, at; function calls (kind function_call, function_management) add function_id, and a graph node's call graph_id and execution_id; a graph run refused before any node ran is kind graph_run with graph_id. Newest first by default.");
        return app;
    }

    public static async Task<EnvelopeOk<JsonArray>> Query(JsonBody body, QueryWindow window, IDocumentStore store, HttpContext http, CancellationToken ct)
    {
        var filter = FilterParser.Parse(body.Node);
        // The log is written behind the calls it records; wait (briefly) for what is queued so a
        // caller who just executed a policy finds that decision.
        if (http.RequestServices.GetService(typeof(DecisionLog)) is DecisionLog log)
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
            wait.CancelAfter(TimeSpan.FromSeconds(2));
            try { await log.FlushAsync(wait.Token); }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested) { }
        }
        // Newest first: decision ids are made from the decision's time (DecisionLog), so id order is time order, and
        // the store walks its id index backwards, stopping once the page is full, instead of sorting every match by "at".
        IReadOnlyList<SortKey> sort = window.Sort.Count > 0 ? window.Sort : [SortKey.ById(SortDirection.Desc)];
        var found = await store.QueryAsync(Collections.Decisions, window.Over(filter) with { Sort = sort }, ct);
        return Answer.Ok(new JsonArray([.. found.Select(d => (JsonNode)d.Body)]));
    }
}
