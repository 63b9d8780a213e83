using PolicyGrid.Sdk.Evaluation;

namespace PolicyGrid.Sdk.Tests;

/// <summary>Tests of local evaluators against a <see cref="LoopbackRegistry"/> holding the allowlist policy: what they make is disposed after each test.</summary>
public abstract class LoopbackRegistryTests : IAsyncDisposable
{
    private protected readonly LoopbackRegistry _registry = new(EvaluatorTests.Document(), TestBundles.AllowlistZip());
    private protected readonly string _cache = Directory.CreateTempSubdirectory("pg-sdk-cache-").FullName;
    private protected readonly List<LocalPolicyEvaluator> _made = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var e in _made) await e.DisposeAsync();
        _registry.Dispose();
        Directory.Delete(_cache, recursive: true);
        GC.SuppressFinalize(this);
    }
}
