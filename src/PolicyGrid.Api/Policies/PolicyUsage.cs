using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using System.Text.Json.Nodes;

namespace PolicyGrid.Api.Policies;

/// <summary>Functions deployed from a policy, and graphs wired from those functions: what a delete would break.</summary>
public sealed record PolicyUsage(IReadOnlyList<string> Functions, IReadOnlyList<string> Graphs)
{
    public bool IsEmpty => Functions.Count == 0 && Graphs.Count == 0;

    public override string ToString()
    {
        var parts = new List<string>();
        if (Functions.Count > 0) parts.Add($"function(s) {string.Join(", ", Functions)}");
        if (Graphs.Count > 0) parts.Add($"graph(s) {string.Join(", ", Graphs)}");
        return string.Join(" and ", parts);
    }

    public static async Task<PolicyUsage> FindAsync(IDocumentStore store, string policyUri, CancellationToken ct)
    {
        var byPolicy = new FieldFilter("function_policy_rule_uri", FieldOperator.Eq, JsonValue.Create(policyUri));
        var functions = await store.QueryAsync(Collections.Functions, new DocumentQuery(byPolicy, [], 0, DocumentQuery.MaxLimit), ct);
        var functionIds = functions.Select(f => f.Id).ToList();
        if (functionIds.Count == 0) return new PolicyUsage([], []);
        return new PolicyUsage(functionIds, await GraphsWithNodesAsync(store, functionIds, ct));
    }

    /// <summary>The URIs of the graphs (at most a query's page) that have any of these functions as a node.</summary>
    public static async Task<IReadOnlyList<string>> GraphsWithNodesAsync(IDocumentStore store, IReadOnlyList<string> functionIds, CancellationToken ct)
    {
        var byFunction = new FieldFilter("graph_function_ids", FieldOperator.In, new JsonArray([.. functionIds.Select(id => (JsonNode)JsonValue.Create(id))]));
        var graphs = await store.QueryAsync(Collections.Graphs, new DocumentQuery(byFunction, [], 0, DocumentQuery.MaxLimit), ct);
        return [.. graphs.Select(g => g.Id)];
    }
}
