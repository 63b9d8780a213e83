using System.ComponentModel;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Api.Auth;
using PolicyGrid.Api.Documents;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Api.Graphs;

/// <summary>
/// Type 5 graphs: create, read, update, delete and query Graph documents, execute a graph by URI (synchronously,
/// with a trace, or asynchronously with an execution id to poll and cancel), and draw it as a Mermaid flowchart.
/// </summary>
public static class GraphsApi
{
    public const string MermaidMediaType = "text/vnd.mermaid";

    public static IServiceCollection AddGraphsApi(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<GraphExecutionOptions>().Bind(configuration.GetSection(GraphExecutionOptions.Section)).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Microsoft.Extensions.Options.IValidateOptions<GraphExecutionOptions>, GraphExecutionOptionsValidator>());
        services.AddSingleton<GraphRegistry>();
        // Its stop waits for the asynchronous runs the stop cancelled to store how they ended.
        services.AddHostedService(sp => sp.GetRequiredService<GraphRegistry>());
        services.TryAddSingleton<GraphExecutionRetention>();
        services.AddHostedService(sp => sp.GetRequiredService<GraphExecutionRetention>());
        services.TryAddSingleton<IGraphRunner, UnavailableGraphRunner>();
        return services;
    }

    public static IEndpointRouteBuilder MapGraphsApi(this IEndpointRouteBuilder app)
    {
        var graphs = app.MapGroup("/graphs").WithTags("Graphs");
        graphs.MapPost("", Create).WithName("CreateGraph").WithSummary("Register a graph")
            .WithDescription("The shape is checked now: a DAG over graph_function_ids with exactly one sink, no self-loops, no unknown nodes.");
        graphs.MapPost("/query", Query).WithName("QueryGraphs").WithSummary("Find graphs with a Mongo-style filter")
            .WithDescription("Body: a filter; ?limit (default 100, max 1000), ?skip, ?sort=field:asc|desc.");
        graphs.MapQueryIsPostOnly("GET /graphs/{uri}");
        graphs.MapGet("/{uri}", Get).WithName("GetGraph").WithSummary("Read a graph");
        graphs.MapPut("/{uri}", Update).WithName("UpdateGraph").WithSummary("Update a graph ($set, $unset, $push, $inc or a replacement; re-validated)");
        graphs.MapDelete("/{uri}", Delete).WithName("DeleteGraph").WithSummary("Delete a graph");
        graphs.MapGet("/{uri}/diagram", Diagram).WithName("GraphDiagram").WithSummary("The graph as a Mermaid flowchart (text/vnd.mermaid)")
            .Produces<string>(200, MermaidMediaType);

        var run = app.MapGroup("/graph").WithTags("Graphs");
        run.MapPost("/execute_graph", Execute).WithName("ExecuteGraph").WithSummary("Run a graph and answer its sink's output")
            .WithDescription("Body: {graph_uri, input_data, trace?, async?, timeout_seconds?}. trace adds each node's input, output and duration; async answers {execution_id} at once.");
        run.MapGet("/executions/{id}", Execution).WithName("GetGraphExecution").WithSummary("Status and result of an asynchronous graph run");
        run.MapDelete("/executions/{id}", Cancel).WithName("CancelGraphExecution")
            .WithSummary("Cancel a running asynchronous graph run (one that already ended is answered unchanged)");
        return app;
    }

    public static async Task<EnvelopeOk<JsonObject>> Create(JsonBody body, GraphRegistry graphs, HttpContext http, CancellationToken ct) =>
        await Written(http, graphs, body.RequireObject(), await graphs.CreateAsync(body.RequireObject(), ct), ct);

    public static async Task<EnvelopeOk<JsonObject>> Get([Description("The graph URI, name:version-release_tag")] string uri, GraphRegistry graphs, HttpContext http, CancellationToken ct) =>
        Read(http, await graphs.GetAsync(uri, ct));

    public static async Task<EnvelopeOk<JsonObject>> Update(string uri, JsonBody body, GraphRegistry graphs, HttpContext http, CancellationToken ct) =>
        await Written(http, graphs, body.RequireObject("update"), await graphs.UpdateAsync(uri, body.RequireObject("update"), ETags.IfMatch(http.Request), ct), ct);

    public static async Task<EnvelopeOk<JsonObject>> Delete(string uri, GraphRegistry graphs, HttpContext http, CancellationToken ct) =>
        Answer.Ok((await graphs.DeleteAsync(uri, ETags.IfMatch(http.Request), ct)).Body);

    public static async Task<EnvelopeOk<JsonArray>> Query(JsonBody body, QueryWindow window, GraphRegistry graphs, CancellationToken ct)
    {
        var found = await graphs.QueryAsync(window.Over(FilterParser.Parse(body.Node)), ct);
        return Answer.Ok(new JsonArray([.. found.Select(g => (JsonNode)g.Body.DeepClone())]));
    }

    public static async Task<ContentHttpResult> Diagram(string uri, GraphRegistry graphs, CancellationToken ct) =>
        TypedResults.Text(await graphs.DiagramAsync(uri, ct), MermaidMediaType);

    /// <summary>The header a synchronous run's answer names its execution id in (its nodes' decision log records carry it), a failed run's too.</summary>
    public const string ExecutionIdHeader = Envelope.ErrorEnvelopeMiddleware.ExecutionIdHeader;

    public static async Task<EnvelopeOk<JsonNode?>> Execute(JsonBody body, GraphRegistry graphs, HttpContext http, CancellationToken ct)
    {
        const string kind = "an execute_graph request";
        var fields = body.RequireObject();
        var result = await IgnoredFields.ExplainingRefusals(fields, ExecuteFields, kind, () => graphs.ExecuteAsync(fields, http.Caller(),
            id => http.Response.Headers[ExecutionIdHeader] = id, () => http.Response.Headers["Deprecation"] = "true", ct));
        return Answer.Ok(result, IgnoredFields.Warnings(fields, ExecuteFields, kind, fate: "was ignored"));
    }

    /// <summary>The fields of an execute_graph body.</summary>
    public static readonly IReadOnlySet<string> ExecuteFields = new HashSet<string>(StringComparer.Ordinal)
        { "graph_uri", "input_data", "trace", "async", "timeout_seconds" };

    public static async Task<EnvelopeOk<JsonObject>> Execution(string id, GraphRegistry graphs, CancellationToken ct) =>
        Answer.Ok(await graphs.ExecutionAsync(id, ct));

    public static async Task<EnvelopeOk<JsonObject>> Cancel(string id, GraphRegistry graphs, HttpContext http, CancellationToken ct) =>
        Answer.Ok(await graphs.CancelAsync(id, http.Caller(), ct));

    // A graph may be stored before its functions are deployed (it runs once they are), but a node named by mistake
    // should not first show up at execution: the answer warns of every node that has no deployed function now, and of
    // fields the body named that a graph does not have.
    private static async Task<EnvelopeOk<JsonObject>> Written(HttpContext http, GraphRegistry graphs, JsonObject body, StoredDocument stored, CancellationToken ct)
    {
        ETags.Set(http.Response, stored.Revision);
        IReadOnlyList<string> warnings = [.. IgnoredFields.Warnings(body, stored.Body, "a graph"), .. await graphs.UndeployedNodeWarningsAsync(stored.Body, ct)];
        return Answer.Ok(stored.Body, warnings);
    }

    private static EnvelopeOk<JsonObject> Read(HttpContext http, StoredDocument stored)
    {
        ETags.Set(http.Response, stored.Revision);
        return Answer.Ok(stored.Body);
    }
}
