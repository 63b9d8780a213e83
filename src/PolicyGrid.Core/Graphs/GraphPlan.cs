using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Graphs;

/// <summary>
/// The execution plan of a Type 5 graph, shared by every graph runner so they cannot disagree.
/// <c>graph_connection_data</c> maps a node to its children; the graph must be a DAG over
/// <c>graph_function_ids</c> with exactly one sink (a node with no children). Roots receive the
/// graph's input; a node with several parents receives their outputs in
/// <c>graph_function_ids</c> order; nodes of one level can run concurrently.
/// </summary>
public sealed class GraphPlan
{
    private const string IdsField = "graph_function_ids";
    private const string ConnectionsField = "graph_connection_data";

    private readonly Dictionary<string, int> _position;
    private readonly Dictionary<string, IReadOnlyList<string>> _children;
    private readonly Dictionary<string, IReadOnlyList<string>> _parents;

    private GraphPlan(IReadOnlyList<string> nodes, Dictionary<string, int> position,
        Dictionary<string, IReadOnlyList<string>> children, Dictionary<string, IReadOnlyList<string>> parents,
        IReadOnlyList<IReadOnlyList<string>> levels)
    {
        Nodes = nodes;
        _position = position;
        _children = children;
        _parents = parents;
        Levels = levels;
        Roots = nodes.Where(n => parents[n].Count == 0).ToList();
        Sink = nodes.Single(n => children[n].Count == 0);
        Order = levels.SelectMany(l => l).ToList();
    }

    /// <summary>Every node, in <c>graph_function_ids</c> order.</summary>
    public IReadOnlyList<string> Nodes { get; }

    /// <summary>
    /// Topological levels: a node's level is one more than its deepest parent's, so every node's
    /// parents sit in earlier levels and the nodes of one level are independent. Each level is in
    /// <c>graph_function_ids</c> order; the last level is the sink alone.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<string>> Levels { get; }

    /// <summary>A valid sequential order: the levels flattened.</summary>
    public IReadOnlyList<string> Order { get; }

    /// <summary>Nodes without parents (they receive the graph's input_data), in <c>graph_function_ids</c> order.</summary>
    public IReadOnlyList<string> Roots { get; }

    /// <summary>The one node without children; its output is the graph's result.</summary>
    public string Sink { get; }

    /// <summary>The node's parents in <c>graph_function_ids</c> order (the order of the list a join receives).</summary>
    public IReadOnlyList<string> Parents(string node) => _parents.TryGetValue(node, out var p) ? p : throw UnknownNode(node);

    /// <summary>The node's children as listed in <c>graph_connection_data</c>.</summary>
    public IReadOnlyList<string> Children(string node) => _children.TryGetValue(node, out var c) ? c : throw UnknownNode(node);

    public bool Contains(string node) => _position.ContainsKey(node);

    /// <summary>
    /// Checks the shape and builds the plan. Rejects (400 validation_failed, naming the offending
    /// nodes) an empty graph, duplicate or empty ids, connections naming unknown nodes, duplicate
    /// children, self-loops, cycles and anything but exactly one sink.
    /// </summary>
    public static GraphPlan Build(IReadOnlyList<string> functionIds, IReadOnlyDictionary<string, IReadOnlyList<string>> connections)
    {
        ArgumentNullException.ThrowIfNull(functionIds);
        ArgumentNullException.ThrowIfNull(connections);
        var errors = new List<FieldError>();

        if (functionIds.Count == 0) errors.Add(new(IdsField, "must name at least one function"));
        var position = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < functionIds.Count; i++)
        {
            var id = functionIds[i];
            if (string.IsNullOrEmpty(id)) errors.Add(new($"{IdsField}[{i}]", "must not be empty"));
            else if (!position.TryAdd(id, i)) errors.Add(new($"{IdsField}[{i}]", $"'{id}' appears more than once"));
        }

        var children = functionIds.Distinct(StringComparer.Ordinal).ToDictionary(n => n, _ => new List<string>(), StringComparer.Ordinal);
        foreach (var key in connections.Keys.OrderBy(k => position.GetValueOrDefault(k, int.MaxValue)).ThenBy(k => k, StringComparer.Ordinal))
        {
            var path = $"{ConnectionsField}.{key}";
            var known = position.ContainsKey(key);
            if (!known) errors.Add(new(path, $"'{key}' is not in {IdsField}"));
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var child in connections[key] ?? [])
            {
                if (child == key) { errors.Add(new(path, $"'{key}' connects to itself")); continue; }
                if (!position.ContainsKey(child)) { errors.Add(new(path, $"child '{child}' is not in {IdsField}")); continue; }
                if (!seen.Add(child)) { errors.Add(new(path, $"child '{child}' is listed more than once")); continue; }
                if (known) children[key].Add(child);
            }
        }
        if (errors.Count > 0) throw Problems.Validation(errors);

        var nodes = functionIds.ToList();
        var parents = nodes.ToDictionary(n => n, _ => new List<string>(), StringComparer.Ordinal);
        foreach (var node in nodes)
            foreach (var child in children[node])
                parents[child].Add(node);
        foreach (var list in parents.Values) list.Sort((a, b) => position[a].CompareTo(position[b]));

        var levels = LevelsOf(nodes, children, parents, position);
        if (levels is null) throw Problems.Validation(ConnectionsField, $"has a cycle: {string.Join(" -> ", FindCycle(nodes, children, parents))}");

        var sinks = nodes.Where(n => children[n].Count == 0).ToList();
        if (sinks.Count != 1)
            throw Problems.Validation(ConnectionsField,
                $"must leave exactly one sink (a node with no children), but {sinks.Count} nodes have none: {string.Join(", ", sinks)}");

        return new GraphPlan(nodes, position,
            children.ToDictionary(p => p.Key, p => (IReadOnlyList<string>)p.Value, StringComparer.Ordinal),
            parents.ToDictionary(p => p.Key, p => (IReadOnlyList<string>)p.Value, StringComparer.Ordinal),
            levels);
    }

    /// <summary>Longest-path levels by Kahn's algorithm; null when a cycle leaves nodes unplaced.</summary>
    private static List<IReadOnlyList<string>>? LevelsOf(List<string> nodes, Dictionary<string, List<string>> children,
        Dictionary<string, List<string>> parents, Dictionary<string, int> position)
    {
        var remaining = nodes.ToDictionary(n => n, n => parents[n].Count, StringComparer.Ordinal);
        var level = nodes.ToDictionary(n => n, _ => 0, StringComparer.Ordinal);
        var ready = new Queue<string>(nodes.Where(n => remaining[n] == 0));
        var placed = 0;
        while (ready.Count > 0)
        {
            var node = ready.Dequeue();
            placed++;
            foreach (var child in children[node])
            {
                level[child] = Math.Max(level[child], level[node] + 1);
                if (--remaining[child] == 0) ready.Enqueue(child);
            }
        }
        if (placed < nodes.Count) return null;
        return nodes.GroupBy(n => level[n]).OrderBy(g => g.Key)
            .Select(g => (IReadOnlyList<string>)g.OrderBy(n => position[n]).ToList()).ToList();
    }

    /// <summary>
    /// One cycle, written forwards and closed (a -> b -> a). Walks parent links among the nodes
    /// Kahn's algorithm could not place: each of those has an unplaced parent, so the walk must repeat.
    /// </summary>
    private static List<string> FindCycle(List<string> nodes, Dictionary<string, List<string>> children, Dictionary<string, List<string>> parents)
    {
        var unplaced = Unplaced(nodes, children, parents);
        var walk = new List<string>();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        var current = nodes.First(unplaced.Contains);
        while (!index.ContainsKey(current))
        {
            index[current] = walk.Count;
            walk.Add(current);
            current = parents[current].First(unplaced.Contains);
        }
        var cycle = walk.Skip(index[current]).Reverse().ToList(); // parent walk reversed = child direction
        // Start the cycle at its earliest node in graph_function_ids for a stable message. A set to find it: testing each
        // node against the cycle's list took nodes x cycle length, seconds for a graph a 1 MiB body holds.
        var onCycle = new HashSet<string>(cycle, StringComparer.Ordinal);
        var start = cycle.IndexOf(nodes.First(onCycle.Contains));
        cycle = cycle.Skip(start).Concat(cycle.Take(start)).ToList();
        cycle.Add(cycle[0]);
        return cycle;
    }

    private static HashSet<string> Unplaced(List<string> nodes, Dictionary<string, List<string>> children, Dictionary<string, List<string>> parents)
    {
        var remaining = nodes.ToDictionary(n => n, n => parents[n].Count, StringComparer.Ordinal);
        var ready = new Queue<string>(nodes.Where(n => remaining[n] == 0));
        var unplaced = new HashSet<string>(nodes, StringComparer.Ordinal);
        while (ready.Count > 0)
        {
            var node = ready.Dequeue();
            unplaced.Remove(node);
            foreach (var child in children[node])
                if (--remaining[child] == 0) ready.Enqueue(child);
        }
        return unplaced;
    }

    private static ArgumentException UnknownNode(string node) => new($"'{node}' is not a node of this graph", nameof(node));
}
