using System.Text;

namespace PolicyGrid.Core.Graphs;

/// <summary>
/// Renders a graph as a Mermaid flowchart (answered as <c>text/vnd.mermaid</c>). Nodes get
/// generated ids (<c>n0</c>, <c>n1</c>, …) so any function name is safe; the name is the label.
/// Roots are drawn as stadiums and the sink as a double circle.
/// </summary>
public static class GraphDiagram
{
    public static string ToMermaid(GraphPlan plan, string? title = null)
    {
        ArgumentNullException.ThrowIfNull(plan);
        var ids = plan.Nodes.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => $"n{p.i}", StringComparer.Ordinal);
        var roots = plan.Roots.ToHashSet(StringComparer.Ordinal); // a list searched per node was nodes x roots
        var text = new StringBuilder();
        if (!string.IsNullOrEmpty(title)) text.Append("---\ntitle: ").Append(YamlString(title)).Append("\n---\n");
        text.Append("flowchart TD\n");
        foreach (var node in plan.Nodes)
        {
            var label = Label(node);
            var shape = node == plan.Sink ? $"((\"{label}\"))" : roots.Contains(node) ? $"([\"{label}\"])" : $"[\"{label}\"]";
            text.Append("    ").Append(ids[node]).Append(shape).Append('\n');
        }
        foreach (var node in plan.Order)
            foreach (var child in plan.Children(node))
                text.Append("    ").Append(ids[node]).Append(" --> ").Append(ids[child]).Append('\n');
        return text.ToString();
    }

    // The title sits in YAML front matter, where a plain scalar starting with [ { * & ! | > ' " @ ` ? or % is a flow
    // collection, an alias, a tag, a block scalar, a quoted string or reserved, so a graph named '[beta' or '*x' broke
    // the whole diagram (and #quot; would show as such there). A double-quoted YAML string holds any name.
    private static string YamlString(string s) =>
        "\"" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)
            .Replace("\n", " ", StringComparison.Ordinal).Replace("\r", " ", StringComparison.Ordinal) + "\"";

    // Mermaid labels are quoted; a quote inside would end them, and newlines would break the line format.
    private static string Label(string s) => s.Replace("\"", "#quot;", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal).Replace("\r", " ", StringComparison.Ordinal);
}
