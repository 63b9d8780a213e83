using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

public sealed class PolicyOnboardingTests : IAsyncLifetime
{
    private readonly ExecutorHarness harness = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => new(harness.Pool.StartAsync(Ct));
    public ValueTask DisposeAsync() => harness.DisposeAsync();

    private PolicyRule Rule(string code, JsonObject? parameters = null) => PolicyRule.FromJson(new JsonObject
    {
        ["name"] = "candidate",
        ["version"] = "1.0",
        ["release_tag"] = "new",
        ["type"] = "python_class_v1",
        ["code"] = code,
        ["policy_parameters"] = parameters ?? [],
    });

    private async Task<PolicyGridException> Rejected(Runtime.Bundles.BundleDirectory bundle, JsonObject? parameters = null)
    {
        var error = await Should.ThrowAsync<PolicyGridException>(() => harness.Onboarding.DryLoadAsync(Rule(harness.Bundles.Add(bundle), parameters), Ct));
        error.Status.ShouldBe(400);
        return error;
    }

    [Fact]
    public async Task The_samples_load()
    {
        foreach (var sample in new[] { "ip_allowlist", "rate_limiter", "config_validator" })
        {
            var manifest = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(TestBundles.RepoRoot(), "samples", "policies", sample, "manifest.json")))!.AsObject();
            manifest["code"] = harness.Bundles.Add(TestBundles.Sample(sample));
            await harness.Onboarding.DryLoadAsync(PolicyRule.FromJson(manifest), Ct);
        }
    }

    [Fact]
    public async Task A_bundle_without_function_py_is_rejected_saying_so()
    {
        var error = await Rejected(TestBundles.Empty());
        error.Message.ShouldContain("no code/function.py");
    }

    [Fact]
    public async Task A_bundle_without_the_policy_class_is_rejected_saying_so()
    {
        var error = await Rejected(TestBundles.FromSource("class PolicyRule:\n    pass\n"));
        error.Message.ShouldContain("no AIOSv1PolicyRule class");
    }

    [Fact]
    public async Task A_constructor_that_raises_is_rejected_with_its_error()
    {
        var error = await Rejected(TestBundles.FromSource("""
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    if "threshold" not in parameters:
                        raise ValueError("parameters.threshold is required")
            """));
        error.Message.ShouldContain("__init__ raised ValueError: parameters.threshold is required");
    }

    [Fact]
    public async Task A_constructor_that_hangs_is_rejected()
    {
        await using var quick = new ExecutorHarness(o => o.Execution.DefaultTimeout = TimeSpan.FromMilliseconds(500));
        var rule = Rule(quick.Bundles.Add(TestBundles.FromSource("""
            class AIOSv1PolicyRule:
                def __init__(self, rule_id, settings, parameters):
                    while True:
                        pass
            """)));
        var error = await Should.ThrowAsync<PolicyGridException>(() => quick.Onboarding.DryLoadAsync(rule, Ct));
        error.Status.ShouldBe(400);
        error.Message.ShouldContain("deadline");
    }

    [Fact]
    public async Task A_module_that_fails_to_import_is_rejected()
    {
        var error = await Rejected(TestBundles.FromSource("import numpy_that_is_not_installed\n"));
        error.Message.ShouldContain("ModuleNotFoundError");
    }
}
