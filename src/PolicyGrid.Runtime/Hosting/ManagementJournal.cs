using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Runtime.Hosting;

/// <summary>One management action a <see cref="ManagementJournal"/> replays (its JSON is what a Type 4 actor keeps in its state).</summary>
public sealed record ManagementJournalEntry(string Action, string DataJson);

/// <summary>
/// The management actions that succeeded on one long-lived instance in the worker pool whose class has no <c>get_state</c>
/// (a Type 4 function actor's, a .NET SDK evaluator's own in WorkerProcess mode). That instance is the only place they live:
/// one the pool recreates from its load spec (its worker crashed, overran its deadline or memory, was recycled; the instance
/// was evicted) lacks them, so it replays them, in order, before it runs anything else. A class with <c>get_state</c> keeps
/// no journal: <c>set_state(saved)</c> (<see cref="PolicyInvocation.RestoreState"/>) restores it. Not thread-safe: its owner
/// runs one method of the instance at a time.
/// </summary>
/// <param name="owner">How errors name the instance's owner now ("function f (actor f)"; a redeployment may rename it).</param>
public sealed class ManagementJournal(PythonWorkerPool pool, string instanceKey, Func<string> owner, ILogger logger)
{
    private List<ManagementJournalEntry> _entries = [];

    // Whether the pool created the instance the last method ran on (the replay reads it).
    private bool _created;

    /// <summary>How often one replay starts over because the pool dropped the instance part way, before the call fails with a 503.</summary>
    public const int MaxReplayRestarts = 3;

    public int Count => _entries.Count;

    public IReadOnlyList<ManagementJournalEntry> Entries => _entries;

    /// <summary>Whether the live instance may lack the journal (it is, or will be, created from its load spec): replayed first.</summary>
    public bool ReplayDue { get; private set; }

    public void Add(string action, JsonNode data) => _entries.Add(new ManagementJournalEntry(action, data.ToJsonString()));

    /// <summary>Holds <paramref name="entries"/> instead (read back from where the owner keeps them, or none to start afresh).</summary>
    public void Reset(IEnumerable<ManagementJournalEntry> entries, bool replayDue)
    {
        _entries = [.. entries];
        ReplayDue = replayDue;
    }

    /// <summary>Forgets every entry (a class with <c>get_state</c>: its saved state holds what they did).</summary>
    public void Clear() => _entries.Clear();

    public string ToJson() => JsonSerializer.Serialize(_entries);

    public static IReadOnlyList<ManagementJournalEntry> FromJson(string? json) =>
        json is null ? [] : JsonSerializer.Deserialize<List<ManagementJournalEntry>>(json) ?? [];

    /// <summary>Drops the live instance (it may hold half of a failed method, or its worker went): the next one replays first.</summary>
    public async Task DropInstanceAsync()
    {
        await pool.ReleaseAsync(instanceKey, CancellationToken.None);
        ReplayDue = true;
    }

    /// <summary>
    /// Runs <paramref name="work"/> (which calls the instance through <see cref="InvokeAsync"/>) after replaying the journal
    /// when it is due. When the pool recreated the instance under the method without the journal, that answer is dropped with
    /// the instance, <paramref name="rollback"/> puts back what the owner took from it, the journal is replayed on a fresh
    /// one and the method runs again there: its answer or error is the one given (so a policy's side effects outside its
    /// instance may happen twice). <paramref name="apply"/> runs one entry's management on the instance through
    /// <see cref="InvokeAsync"/> with <c>replaying: true</c>.
    /// </summary>
    public async Task<T> RunAsync<T>(Func<Task<T>> work, Func<ManagementJournalEntry, Task> apply, Action rollback)
    {
        if (ReplayDue) await ReplayAsync(apply);
        try
        {
            return await work();
        }
        catch (InstanceRecreated)
        {
            logger.LogWarning("{Owner}: its instance was recreated without its management actions; replaying them before the call", owner());
            rollback();
            await ReplayAsync(apply);
            try
            {
                return await work();
            }
            catch (InstanceRecreated)
            {
                throw Problems.BackendUnavailable($"{owner()}: the worker pool recreated its instance twice in one call; retry");
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="call"/> on the instance, its <c>get_state()</c> in the same round trip. An instance the pool
    /// created for a method outside a replay lacks the journal: it is dropped and <see cref="RunAsync{T}"/> runs the method
    /// again after the replay, whether it answered there or raised (perhaps only for lack of the journal; kept, the instance
    /// would answer without it until it was lost again).
    /// </summary>
    public async Task<PolicyAnswer> InvokeAsync(PolicyInvocation call, bool replaying = false, CancellationToken ct = default)
    {
        _created = false;
        PolicyAnswer answer;
        try
        {
            answer = await pool.InvokeWithStateAsync(call, ct);
        }
        catch (PolicyRaisedOnNewInstanceException e) when (!replaying && !e.KeepsState && _entries.Count > 0)
        {
            await DropInstanceAsync();
            throw new InstanceRecreated();
        }
        catch (PolicyStateNotRestoredException e)
        {
            // Named as what failed (it read as the method's own error): the saved state is kept, and the next call tries again.
            LogCouldNotRestore(logger, owner(), e.Message);
            throw new PolicyGridException(e.Status, e.Code, CouldNotRestore(owner(), e.Message), inner: e);
        }
        _created = answer.Created;
        if (answer.Created && !replaying && !answer.KeepsState && _entries.Count > 0)
        {
            await DropInstanceAsync();
            throw new InstanceRecreated();
        }
        return answer;
    }

    /// <summary>
    /// Applies the journal, in order, to an instance created from its load spec. An entry that fails fails the call with its
    /// status (422, or 504 past the deadline) naming the action and the entry, and the instance is dropped: the next call
    /// starts again from the load spec, so none is answered without the actions.
    /// </summary>
    private async Task ReplayAsync(Func<ManagementJournalEntry, Task> apply)
    {
        var restarts = 0;
        for (var i = 0; i < _entries.Count; i++)
        {
            var entry = _entries[i];
            try
            {
                await apply(entry);
                if (_created && i > 0) throw new InstanceRecreated();
            }
            catch (Exception e) when (i > 0 && (e is InstanceRecreated || e is PolicyRaisedOnNewInstanceException { KeepsState: false }))
            {
                // The pool dropped the instance part way (evicted, its worker replaced): the new one ran this entry without
                // those before it. Replayed from the first entry on a fresh instance, or it would answer without them.
                await pool.ReleaseAsync(instanceKey, CancellationToken.None);
                logger.LogWarning("{Owner}: its instance was recreated while it replayed management '{Action}' (journal entry {Entry} of {Entries}); replaying from the first entry",
                    owner(), entry.Action, i + 1, _entries.Count);
                if (++restarts > MaxReplayRestarts)
                    throw Problems.BackendUnavailable($"{owner()}: the worker pool dropped its instance {restarts} times while it replayed its management journal; retry");
                i = -1;
            }
            catch (PolicyGridException e)
            {
                await pool.ReleaseAsync(instanceKey, CancellationToken.None);
                LogCouldNotReplay(logger, owner(), entry.Action, i + 1, _entries.Count, e.Message);
                throw new PolicyGridException(e.Status, e.Code, CouldNotReplay(owner(), entry.Action, i + 1, _entries.Count, e.Message));
            }
        }
        ReplayDue = false;
    }

    /// <summary>How an owner says that entry <paramref name="entry"/> of <paramref name="entries"/> failed again on a recreated
    /// instance (here, and an SDK's in-process evaluator, which keeps its journal itself), so every mode words it alike.</summary>
    public static string CouldNotReplay(string owner, string action, int entry, int entries, string reason) =>
        $"{owner} could not apply management '{action}' (journal entry {entry} of {entries}) again after its instance was recreated: " +
        $"{reason}; it tries again before its next call";

    /// <summary>Logs, as a warning, that entry <paramref name="entry"/> of <paramref name="entries"/> failed again on a recreated
    /// instance (here, and an SDK's in-process evaluator), so every mode logs it alike.</summary>
    public static void LogCouldNotReplay(ILogger logger, string owner, string action, int entry, int entries, string reason) =>
        logger.LogWarning("{Owner} could not replay management '{Action}' (journal entry {Entry} of {Entries}): {Reason}",
            owner, action, entry, entries, reason);

    /// <summary>How an owner that keeps its instance's <c>get_state()</c> says that <c>set_state</c> of it raised on a recreated
    /// instance (a Type 4 function, an SDK evaluator in every local mode), so every one words it alike.</summary>
    public static string CouldNotRestore(string owner, string reason) =>
        $"{owner} could not restore its state with set_state() after its instance was recreated: {reason}; it tries again before its next call";

    /// <summary>Logs, as a warning, what <see cref="CouldNotRestore"/> says.</summary>
    public static void LogCouldNotRestore(ILogger logger, string owner, string reason) =>
        logger.LogWarning("{Owner} could not restore its state with set_state() after its instance was recreated: {Reason}", owner, reason);

    /// <summary>The pool created the instance a method ran on without the journal (see <see cref="InvokeAsync"/>).</summary>
    private sealed class InstanceRecreated : Exception;
}
