using System.Diagnostics;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// One execution's entry in the decision log, filled in as the call learns what it ran (policy, bundle,
/// context key) and recorded whatever the outcome: the audit trail a governance system owes.
/// </summary>
public sealed class AuditTrail(string kind, string uri, CallerIdentity caller, string contextKey, string inputSha)
{
    public string Kind => kind;

    private readonly long started = Stopwatch.GetTimestamp();
    private readonly DateTimeOffset at = DateTimeOffset.UtcNow;
    private string outcome = Decision.OutcomeError;
    private string errorCode = "";
    private int status = 500;

    public string PolicyRuleUri { get; set; } = uri ?? "";
    public string BundleSha256 { get; set; } = "";
    public string ContextKey { get; set; } = contextKey;

    /// <summary>Added fields of a function call's record (<see cref="Decision.FunctionId"/> and the graph run's ids).</summary>
    public string FunctionId { get; init; } = "";
    public string GraphId { get; init; } = "";
    public string ExecutionId { get; init; } = "";

    /// <summary>Set when the call is recorded elsewhere after all (a host that keeps the decision log itself ran it): nothing is recorded here.</summary>
    public bool RecordedElsewhere { get; set; }

    /// <summary>Runs the call and records its decision in <paramref name="decisions"/>, whatever the outcome.</summary>
    public Task<PolicyResult> RunAsync(DecisionLog decisions, Func<Task<PolicyResult>> run) => RunAsync<PolicyResult>(decisions, run);

    /// <summary>
    /// Runs the call and records its decision in <paramref name="decisions"/>, whatever the outcome. Every path that records
    /// decisions comes through here, so this is where a call the log cannot record is refused before it runs
    /// (<see cref="DecisionLog.EnsureRecording"/>), and where that refusal is recorded.
    /// </summary>
    public async Task<T> RunAsync<T>(DecisionLog decisions, Func<Task<T>> run)
    {
        ArgumentNullException.ThrowIfNull(decisions);
        ArgumentNullException.ThrowIfNull(run);
        try
        {
            decisions.EnsureRecording();
            var result = await run();
            (outcome, status, errorCode) = (Decision.OutcomeResult, 200, "");
            return result;
        }
        catch (PolicyGridException e)
        {
            (errorCode, status) = (e.Code, e.Status);
            throw;
        }
        catch (OperationCanceledException) when (decisions.ServerStop.EndingCalls)
        {
            // Ended by the server's own stop, not by its caller: the caller is answered 503 (StopGrace), and so it says here.
            (errorCode, status) = (ErrorCodes.BackendUnavailable, 503);
            throw;
        }
        catch (OperationCanceledException)
        {
            (errorCode, status) = ("cancelled", 499);
            throw;
        }
        finally
        {
            if (!RecordedElsewhere) await decisions.RecordAsync(ToDecision());
        }
    }

    private Decision ToDecision() => new(kind, PolicyRuleUri, BundleSha256, caller?.Name ?? CallerIdentity.Anonymous.Name, ContextKey, inputSha,
        outcome, outcome == Decision.OutcomeError && errorCode.Length == 0 ? "internal" : errorCode, status,
        Stopwatch.GetElapsedTime(started).TotalMilliseconds, at)
    {
        FunctionId = FunctionId,
        GraphId = GraphId,
        ExecutionId = ExecutionId,
    };
}
