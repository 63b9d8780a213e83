using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Api.Policies;

/// <summary>
/// Rejects a policy whose <c>code</c> cannot run, at create/update time rather than at first use:
/// the address must be one we can fetch, a <c>bundle://</c> must already be uploaded, and, where
/// this shape runs policies itself (the runtime is registered), the bundle must load: the class is
/// found and its <c>__init__</c> accepts the stored settings and parameters. Answers the rule with
/// <c>code_sha256</c> recorded: the hash of the bundle that loaded, or the hash the address pins.
/// </summary>
public sealed class PolicyCodeCheck(IBundleStore bundles, IServiceProvider services)
{
    // Resolved lazily: a registry that only forwards execution (Dapr shape) has no runtime to dry-load with.
    private readonly Lazy<PolicyOnboarding?> onboarding = new(() => services.GetService<PolicyOnboarding>());

    public async Task<PolicyRule> CheckAsync(PolicyRule rule, CancellationToken ct)
    {
        var code = rule.Code;
        if (code.StartsWith(BundleRef.Scheme, StringComparison.Ordinal))
        {
            var sha = code[BundleRef.Scheme.Length..];
            if (!CodePin.IsSha256(sha))
                throw Problems.Validation("code", $"'{code}' is not bundle://sha256/ followed by 64 lowercase hex digits");
            if (await bundles.GetAsync(sha, ct) is null)
                throw Problems.Validation("code", $"bundle {sha} is not stored on this server; upload the archive with POST /bundles first");
        }
        else if (!Uri.TryCreate(code, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https" or "file"))
        {
            throw Problems.Validation("code", $"'{code}' is not a bundle address: use bundle://sha256/<hex> (from POST /bundles), an http(s):// URL or, where allowed, file://");
        }
        if (onboarding.Value is { } dryLoad) return await dryLoad.DryLoadAsync(rule, ct);
        // Without a runtime nothing is fetched here: only a hash the address pins itself can be recorded
        // (PolicyRule already refused a code_sha256 that disagrees with it).
        return CodePin.Of(code) is { } pinned ? rule with { CodeSha256 = pinned } : rule;
    }
}
