using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// Functions as in-process delegates, for testing the runners' semantics (what each node receives, what runs
/// together, what stops the graph) apart from Python. Records every call in the order it started.
/// </summary>
internal sealed class ScriptedFunctions : IFunctionInvoker
{
    private readonly Dictionary<string, Func<JsonNode?, CancellationToken, Task<JsonObject>>> _functions = [];

    public ConcurrentQueue<(string Node, JsonNode? Input)> Calls { get; } = new();

    /// <summary>A function answering <c>{"by": name, "got": input}</c>: what each node received stays visible in the result.</summary>
    public ScriptedFunctions Echo(params string[] names)
    {
        foreach (var name in names)
            _functions[name] = (input, _) => Task.FromResult(new JsonObject { ["by"] = name, ["got"] = input?.DeepClone() });
        return this;
    }

    public ScriptedFunctions On(string name, Func<JsonNode?, CancellationToken, Task<JsonObject>> body)
    {
        _functions[name] = body;
        return this;
    }

    public Task<JsonObject> CallAsync(string functionId, JsonNode? input, CancellationToken ct = default)
    {
        Calls.Enqueue((functionId, input?.DeepClone()));
        return _functions.TryGetValue(functionId, out var f)
            ? f(input, ct)
            : throw Problems.NotFound($"function '{functionId}' is not deployed");
    }
}
