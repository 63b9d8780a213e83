using System.Text.Json.Nodes;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.Serialization;

namespace PolicyGrid.Dapr.Tests.Yaml;

/// <summary>Reads the repository's YAML (every document of a file) as JSON nodes; scalars stay strings, as YAML wrote them.</summary>
public static class RepoYaml
{
    private static readonly IDeserializer Deserializer = new DeserializerBuilder().Build();

    public static readonly string Root = FindRoot();

    public static string PathOf(string relative) => Path.Combine(Root, relative.Replace('/', Path.DirectorySeparatorChar));

    public static IReadOnlyList<JsonObject> Load(string relative)
    {
        using var reader = new StringReader(File.ReadAllText(PathOf(relative)));
        var parser = new Parser(reader);
        parser.Consume<StreamStart>();
        var documents = new List<JsonObject>();
        while (parser.Accept<DocumentStart>(out _))
            if (ToJson(Deserializer.Deserialize<object>(parser)) is JsonObject o) documents.Add(o);
        return documents;
    }

    public static JsonObject LoadOne(string relative) => Load(relative).Single();

    /// <summary>A file holding one YAML sequence (a kustomize JSON 6902 patch: a list of operations).</summary>
    public static JsonArray LoadList(string relative)
    {
        using var reader = new StringReader(File.ReadAllText(PathOf(relative)));
        return ToJson(Deserializer.Deserialize<object>(reader))!.AsArray();
    }

    /// <summary>Every document of every .yaml file directly in a folder, with the file it came from.</summary>
    public static IEnumerable<(string File, JsonObject Doc)> LoadFolder(string relative) =>
        Directory.GetFiles(PathOf(relative), "*.yaml").Order(StringComparer.Ordinal)
            .SelectMany(f => Load(Path.GetRelativePath(Root, f)).Select(d => (Path.GetFileName(f), d)));

    public static string Text(JsonNode? node) => node?.GetValue<string>() ?? "";

    private static JsonNode? ToJson(object? value) => value switch
    {
        null => null,
        IDictionary<object, object> map => new JsonObject(map.Select(p => KeyValuePair.Create(p.Key.ToString()!, ToJson(p.Value)))),
        IList<object> list => new JsonArray(list.Select(ToJson).ToArray()),
        _ => JsonValue.Create(value.ToString()),
    };

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "dapr.yaml")) && Directory.Exists(Path.Combine(dir.FullName, "components")))
                return dir.FullName;
        throw new InvalidOperationException($"no repository root (with dapr.yaml) above {AppContext.BaseDirectory}");
    }
}
