using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Execution;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>The runtime as a server composes it: embedded storage + AddPolicyRuntime, nothing substituted.</summary>
public sealed class CompositionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task An_uploaded_bundle_runs_through_the_inproc_transport_and_is_audited()
    {
        var root = Path.Combine(TestBundles.Root, "composed-" + Guid.NewGuid().ToString("N")[..8]);
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["PolicyGrid:Runtime:Pool:Workers"] = "2",
            ["PolicyGrid:Runtime:Pool:WorkDirectory"] = Path.Combine(root, "workers"),
            ["PolicyGrid:Runtime:Bundles:CacheDirectory"] = Path.Combine(root, "unpacked"),
        }).Build();
        var collection = new ServiceCollection();
        collection.AddLogging();
        collection.AddEmbeddedStorage(Path.Combine(root, "data"));
        collection.AddPolicyRuntime(configuration);
        await using var services = collection.BuildServiceProvider();
        foreach (var hosted in services.GetServices<IHostedService>()) await hosted.StartAsync(Ct);

        services.GetRequiredService<IPolicyBundleSource>().ShouldBeOfType<BundleCache>();
        var source = File.ReadAllText(Path.Combine(TestBundles.RepoRoot(), "samples", "policies", "rate_limiter", "code", "function.py"));
        using var zip = new MemoryStream();
        using (var archive = new ZipArchive(zip, ZipArchiveMode.Create, leaveOpen: true))
        using (var entry = archive.CreateEntry("code/function.py").Open())
            entry.Write(Encoding.UTF8.GetBytes(source));
        var uploaded = await services.GetRequiredService<IBundleStore>().PutAsync(zip.ToArray(), Ct);

        var manifest = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(TestBundles.RepoRoot(), "samples", "policies", "rate_limiter", "manifest.json"), Ct))!.AsObject();
        manifest["code"] = uploaded.Code;
        var rule = PolicyRule.FromJson(manifest);
        await services.GetRequiredService<PolicyOnboarding>().DryLoadAsync(rule, Ct);
        await services.GetRequiredService<IDocumentStore>().CreateAsync(Collections.Policies, rule.PolicyRuleUri, rule.ToJson(), Ct);

        var local = new Uri("inproc://local");
        var executor = services.GetServices<IExecutorTransport>().Single(t => t.CanHandle(local)).For(local);
        for (var expected = 1; expected <= 3; expected++)
        {
            var result = await executor.ExecuteAsync(new ExecutionRequest(rule.PolicyRuleUri, new JsonObject { ["client_id"] = "carol" }), new CallerIdentity("ops"), Ct);
            result.Output["count"]!.GetValue<int>().ShouldBe(expected);
            result.Output["allowed"]!.GetValue<bool>().ShouldBeTrue();
        }

        await services.GetRequiredService<DecisionLog>().FlushAsync(Ct);
        var decisions = await services.GetRequiredService<IDocumentStore>().QueryAsync(Collections.Decisions, DocumentQuery.All(), Ct);
        decisions.Count.ShouldBe(3);
        decisions.ShouldAllBe(d => d.Body["bundle_sha256"]!.GetValue<string>() == uploaded.Sha256 && d.Body["caller"]!.GetValue<string>() == "ops");

        foreach (var hosted in services.GetServices<IHostedService>()) await hosted.StopAsync(Ct);
    }
}
