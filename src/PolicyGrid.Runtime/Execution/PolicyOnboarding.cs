using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// Rejects a policy whose code cannot run, when it is created or updated rather than at first
/// use: resolves its bundle and loads it once in a worker (import code/function.py, find
/// AIOSv1PolicyRule, call __init__ with the stored settings and parameters).
/// </summary>
public sealed class PolicyOnboarding(IPolicyBundleSource bundles, PythonWorkerPool pool, PolicyRuntimeOptions options)
{
    public async Task DryLoadAsync(PolicyRule rule, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(rule);
        if (rule.Type != PolicyRule.PythonClassV1)
            throw Problems.Validation("type", $"'{rule.Type}' is not a kind of policy this server runs; it runs {PolicyRule.PythonClassV1}");
        var bundle = await bundles.GetAsync(rule.Code, ct);
        var load = new PolicyLoadSpec(rule.PolicyRuleUri, bundle, rule.PolicySettings, rule.PolicyParameters);
        try
        {
            await pool.InvokeOnceAsync(load, PolicyMethods.Load, [], options.Execution.DefaultTimeout, ct);
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
