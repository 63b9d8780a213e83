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
        var text = new StringBuilder();
        if (!string.IsNullOrEmpty(title)) text.Append("---\ntitle: ").Append(Label(title)).Append("\n---\n");
        text.Append("flowchart TD\n");
        foreach (var node in plan.Nodes)
        {
            var label = Label(node);
            var shape = node == plan.Sink ? $"((\"{label}\"))" : plan.Roots.Contains(node) ? $"([\"{label}\"])" : $"[\"{label}\"]";
            text.Append("    ").Append(ids[node]).Append(shape).Append('\n');
        }
        foreach (var node in plan.Order)
            foreach (var child in plan.Children(node))
                text.Append("    ").Append(ids[node]).Append(" --> ").Append(ids[child]).Append('\n');
        return text.ToString();
    }

    // Mermaid labels are quoted; a quote inside would end them, and newlines would break the line format.
    private static string Label(string s) => s.Replace("\"", "#quot;", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal).Replace("\r", " ", StringComparison.Ordinal);
}
