using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Core.Querying;

/// <summary>
/// The time one query may spend evaluating its filter, over every document and every condition together. Each
/// regex match is bounded on its own (<see cref="FieldMatcher.RegexTimeout"/>), but a filter may hold
/// <see cref="FilterParser.MaxConditions"/> of them and a collection many documents: without a bound on the sum one
/// request could hold a core for minutes. It also carries the request's cancellation, so evaluation stops when
/// the caller goes away.
/// </summary>
/// <remarks>
/// Only time spent evaluating conditions counts (<see cref="Matches"/>, <see cref="IsMatch"/>), not the time a store
/// spends reading pages between them, so a slow state store does not use up the budget. One query evaluates its
/// documents one after another: a budget is not shared between threads.
/// </remarks>
public sealed class FilterBudget
{
    /// <summary>The budget of a query that does not set one: ample for any filter a person writes.</summary>
    public static readonly TimeSpan DefaultLimit = TimeSpan.FromSeconds(2);

    /// <summary>No time limit and no cancellation: for filters the server builds itself.</summary>
    public static readonly FilterBudget Unlimited = new(Timeout.InfiniteTimeSpan, CancellationToken.None);

    private readonly long _limitTicks;
    private readonly CancellationToken _ct;
    private long _spentTicks;
    private long _runningSince;

    public FilterBudget(TimeSpan limit, CancellationToken ct)
    {
        if (limit != Timeout.InfiniteTimeSpan && limit <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(limit), limit, "a filter budget must be greater than zero");
        Limit = limit;
        _limitTicks = limit == Timeout.InfiniteTimeSpan ? long.MaxValue : (long)(limit.TotalSeconds * Stopwatch.Frequency);
        _ct = ct;
    }

    public TimeSpan Limit { get; }

    private bool IsUnlimited => _limitTicks == long.MaxValue;

    /// <summary>Whether <paramref name="document"/> matches <paramref name="filter"/>, the time it takes counted against the budget.</summary>
    public bool Matches(FilterNode filter, JsonNode? document)
    {
        ArgumentNullException.ThrowIfNull(filter);
        return Run(filter, document, static (f, d, budget) => f.Matches(d, budget));
    }

    /// <summary>One regex test (a store's own <c>$regex</c> function), counted against the budget.</summary>
    public bool IsMatch(Regex regex, string value)
    {
        ArgumentNullException.ThrowIfNull(regex);
        return Run(regex, value, static (r, v, budget) => FieldMatcher.IsMatch(r, v, budget));
    }

    /// <summary>
    /// Throws when the caller has gone (<see cref="OperationCanceledException"/>) or the budget is spent (a 400 saying
    /// so). Called before each condition and each regex match, so the overrun is at most one regex timeout.
    /// </summary>
    public void Check()
    {
        _ct.ThrowIfCancellationRequested();
        if (IsUnlimited) return;
        var spent = _spentTicks + (_runningSince == 0 ? 0 : Stopwatch.GetTimestamp() - _runningSince);
        if (spent > _limitTicks) throw Exceeded();
    }

    /// <summary>The 400 a query answers when its filter runs past the budget.</summary>
    public PolicyGridException Exceeded() => Problems.BadRequest(
        $"the filter took more than {Seconds(Limit)} to evaluate, this server's time budget for one query; narrow it: " +
        "fewer or simpler $regex conditions (anchor them with ^), or exact conditions that rule out most documents first");

    private bool Run<TA, TB>(TA a, TB b, Func<TA, TB, FilterBudget, bool> work)
    {
        Check();
        // Nested calls (a store's regex function inside a query already being timed) are counted once, by the outer call.
        if (IsUnlimited || _runningSince != 0) return work(a, b, this);
        _runningSince = Stopwatch.GetTimestamp();
        try { return work(a, b, this); }
        finally
        {
            _spentTicks += Stopwatch.GetTimestamp() - _runningSince;
            _runningSince = 0;
        }
    }

    private static string Seconds(TimeSpan t) =>
        t.TotalSeconds >= 1 ? $"{t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s" : $"{t.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture)} ms";
}
