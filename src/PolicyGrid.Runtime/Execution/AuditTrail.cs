using System.Diagnostics;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// One execution's entry in the decision log, filled in as the call learns what it ran (policy, bundle,
/// context key) and recorded whatever the outcome: the audit trail a governance system owes.
/// </summary>
internal sealed class AuditTrail(string kind, string uri, CallerIdentity caller, string contextKey, string inputSha)
{
    private readonly long started = Stopwatch.GetTimestamp();
    private readonly DateTimeOffset at = DateTimeOffset.UtcNow;
    private string outcome = Decision.OutcomeError;
    private string errorCode = "";
    private int status = 500;

    public string PolicyRuleUri { get; set; } = uri ?? "";
    public string BundleSha256 { get; set; } = "";
    public string ContextKey { get; set; } = contextKey;

    /// <summary>Runs the call and records its decision in <paramref name="decisions"/>, whatever the outcome.</summary>
    public async Task<PolicyResult> RunAsync(DecisionLog decisions, Func<Task<PolicyResult>> run)
    {
        try
        {
            var result = await run();
            (outcome, status, errorCode) = (Decision.OutcomeResult, 200, "");
            return result;
        }
        catch (PolicyGridException e)
        {
            (errorCode, status) = (e.Code, e.Status);
            throw;
        }
        catch (OperationCanceledException)
        {
            (errorCode, status) = ("cancelled", 499);
            throw;
        }
        finally
        {
            await decisions.RecordAsync(ToDecision());
        }
    }

    private Decision ToDecision() => new(kind, PolicyRuleUri, BundleSha256, caller?.Name ?? CallerIdentity.Anonymous.Name, ContextKey, inputSha,
        outcome, outcome == Decision.OutcomeError && errorCode.Length == 0 ? "internal" : errorCode, status,
        Stopwatch.GetElapsedTime(started).TotalMilliseconds, at);
}
