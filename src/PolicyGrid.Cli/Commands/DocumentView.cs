using System.Text.Json.Nodes;
using Spectre.Console;

namespace PolicyGrid.Cli.Commands;

/// <summary>How documents look to a person: one as a field/value grid, many as a table of chosen columns.</summary>
public static class DocumentView
{
    public static void One(IAnsiConsole console, JsonNode? document)
    {
        if (document is not JsonObject o) { console.WriteLine(document?.ToJsonString() ?? "null"); return; }
        var grid = new Grid().AddColumn(new GridColumn().NoWrap()).AddColumn();
        foreach (var (key, value) in o)
            grid.AddRow(new Text(key, new Style(decoration: Decoration.Bold)), new Text(Cell(value)));
        console.Write(grid);
    }

    public static void Many(IAnsiConsole console, JsonNode? documents, params string[] columns)
    {
        var items = documents as JsonArray ?? [];
        if (items.Count == 0) { console.WriteLine("(none)"); return; }
        var table = new Table().Border(TableBorder.Simple);
        foreach (var c in columns) table.AddColumn(c);
        foreach (var item in items)
            table.AddRow(columns.Select(c => (Spectre.Console.Rendering.IRenderable)new Text(Cell(Path(item, c)))).ToArray());
        console.Write(table);
        console.WriteLine($"{items.Count} found");
    }

    private static JsonNode? Path(JsonNode? node, string dotted)
    {
        foreach (var part in dotted.Split('.')) node = node is JsonObject o ? o[part] : null;
        return node;
    }

    private static string Cell(JsonNode? value) => value switch
    {
        null => "",
        JsonValue v when v.GetValueKind() == System.Text.Json.JsonValueKind.String => v.GetValue<string>(),
        _ => value.ToJsonString(),
    };
}
