using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Rejects a policy whose code cannot run, when it is created or updated rather than at first
/// use: resolves its bundle and loads it once in a worker (import code/function.py, find
/// AIOSv1PolicyRule, call __init__ with the stored settings and parameters). The bundle is fetched as its
/// source serves it now, and its sha256 becomes the document's <c>code_sha256</c>: what every later fetch
/// must match, so the code that runs is the code that was checked here.
/// </summary>
public sealed class PolicyOnboarding(IPolicyBundleSource bundles, PythonWorkerPool pool, PolicyRuntimeOptions options)
{
    /// <summary>The rule with <c>code_sha256</c> set to the hash of the bundle that loaded.</summary>
    public async Task<PolicyRule> DryLoadAsync(PolicyRule rule, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(rule);
        if (rule.Type != PolicyRule.PythonClassV1)
            throw Problems.Validation("type", $"'{rule.Type}' is not a kind of policy this server runs; it runs {PolicyRule.PythonClassV1}");
        var bundle = await bundles.FetchCurrentAsync(rule.Code, ct);
        // A caller (or the revision being updated) that names the hash gets that code or nothing.
        if (rule.ExpectedCodeSha256 is { } given && given != bundle.Sha256)
            throw Problems.Validation("code_sha256",
                $"bundle '{CodePin.Shown(rule.Code)}' has sha256 {bundle.Sha256}, not the expected {given}; refusing it " +
                $"(send code_sha256 {bundle.Sha256}, or leave it out, to register the code it serves now)");
        var load = new PolicyLoadSpec(rule.PolicyRuleUri, bundle, rule.PolicySettings, rule.PolicyParameters);
        try
        {
            await pool.InvokeOnceAsync(load, PolicyMethods.Load, [], options.Execution.DefaultTimeout, ct);
            return rule with { CodeSha256 = bundle.Sha256 };
        }
        catch (PolicyLoadException e)
        {
            throw Problems.Validation("code", $"the policy cannot be loaded: {e.Reason}");
        }
        catch (PolicyGridException e) when (e.Status is 422 or 504)
        {
            // Loading itself timed out, crashed or ran out of memory: the code is not usable either.
            throw Problems.Validation("code", $"the policy cannot be loaded: {e.Message}");
        }
    }
}
