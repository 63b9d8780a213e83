using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Execution;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Runtime.Tests;

/// <summary>Resolves the bundle addresses tests register to directories written by <see cref="TestBundles"/>.</summary>
internal sealed class RegisteredBundles : IPolicyBundleSource
{
    private readonly Dictionary<string, BundleDirectory> byCode = new(StringComparer.Ordinal);

    public string Add(BundleDirectory bundle)
    {
        var code = "bundle://sha256/" + bundle.Sha256;
        lock (byCode) byCode[code] = bundle;
        return code;
    }

    public Task<BundleDirectory> GetAsync(string code, string? expectedSha256, CancellationToken ct)
    {
        lock (byCode)
            return byCode.TryGetValue(code, out var bundle)
                ? Task.FromResult(bundle)
                : throw Core.Errors.Problems.NotFound($"no bundle {code}");
    }
}

/// <summary>
/// A local executor over real SQLite stores and a real worker pool. <see cref="RestartAsync"/>
/// builds a new executor, pool and stores over the same database file, like a server restart.
/// </summary>
public sealed class ExecutorHarness : IAsyncDisposable
{
    private readonly string dataDir = Path.Combine(TestBundles.Root, "data-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly Action<PolicyRuntimeOptions>? configure;

    public ExecutorHarness(Action<PolicyRuntimeOptions>? configure = null)
    {
        this.configure = configure;
        Build();
    }

    internal RegisteredBundles Bundles { get; } = new();
    public CapturingLoggerProvider Logs { get; } = new();
    public PolicyRuntimeOptions Options { get; private set; } = null!;
    public SqliteDocumentStore Documents { get; private set; } = null!;
    public SqliteContextStore Contexts { get; private set; } = null!;
    public PythonWorkerPool Pool { get; private set; } = null!;
    public LocalPolicyExecutor Executor { get; private set; } = null!;
    public DecisionLog Decisions { get; private set; } = null!;
    public PolicyOnboarding Onboarding { get; private set; } = null!;
    internal KeyedLocks Locks { get; private set; } = null!;

    private void Build()
    {
        Options = new PolicyRuntimeOptions { Pool = PoolFixture.TestOptions() };
        configure?.Invoke(Options);
        var db = new SqliteDatabase(Path.Combine(dataDir, "policygrid.db"));
        Documents = new SqliteDocumentStore(db);
        Contexts = new SqliteContextStore(db);
        Pool = new PythonWorkerPool(Options.Pool, Logs.CreateLogger<PythonWorkerPool>());
        Decisions = new DecisionLog(Documents, Options.Decisions, TimeProvider.System, Logs.CreateLogger<DecisionLog>());
        Executor = new LocalPolicyExecutor(new PolicyCatalog(Documents), Bundles, Pool, Contexts, Locks = new KeyedLocks(), Decisions, Options,
            Logs.CreateLogger<LocalPolicyExecutor>());
        Onboarding = new PolicyOnboarding(Bundles, Pool, Options);
    }

    public async Task RestartAsync()
    {
        await Pool.DisposeAsync();
        await Decisions.DisposeAsync();
        Build();
    }

    /// <summary>Stores a sample's manifest (code pointing at a copy of its bundle) and answers its URI.</summary>
    public async Task<string> AddSampleAsync(string sample, Action<JsonObject>? edit = null)
    {
        var manifest = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(TestBundles.RepoRoot(), "samples", "policies", sample, "manifest.json")))!.AsObject();
        manifest["code"] = Bundles.Add(TestBundles.Sample(sample));
        edit?.Invoke(manifest);
        return await AddPolicyAsync(manifest);
    }

    /// <summary>Stores a policy whose code is <paramref name="functionPy"/>.</summary>
    public Task<string> AddSourceAsync(string name, string functionPy, Action<JsonObject>? edit = null)
    {
        var doc = new JsonObject
        {
            ["name"] = name,
            ["version"] = "1.0",
            ["release_tag"] = "test",
            ["type"] = "python_class_v1",
            ["code"] = Bundles.Add(TestBundles.FromSource(functionPy)),
        };
        edit?.Invoke(doc);
        return AddPolicyAsync(doc);
    }

    private async Task<string> AddPolicyAsync(JsonObject body)
    {
        var rule = PolicyRule.FromJson(body);
        await Documents.CreateAsync(Collections.Policies, rule.PolicyRuleUri, rule.ToJson());
        return rule.PolicyRuleUri;
    }

    public async Task SetStatusAsync(string uri, string status)
    {
        var doc = (await Documents.GetAsync(Collections.Policies, uri))!;
        doc.Body["status"] = status;
        await Documents.ReplaceAsync(Collections.Policies, uri, doc.Body, null);
    }

    /// <summary>The decision log once everything recorded so far is written.</summary>
    public async Task<IReadOnlyList<JsonObject>> DecisionsAsync()
    {
        await Decisions.FlushAsync();
        return (await Documents.QueryAsync(Collections.Decisions, DocumentQuery.All())).Select(d => d.Body).OrderBy(d => d["at"]!.GetValue<string>()).ToList();
    }

    public async ValueTask DisposeAsync()
    {
        await Pool.DisposeAsync();
        await Decisions.DisposeAsync();
    }
}
